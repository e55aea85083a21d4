"""Events: canonical encoding, ids, signatures; the decoder never fails with a foreign error."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pauction.errors import DecodeError, UsageError
from p2pauction.state.events import (SIG_DOMAIN, BidBody, CloseBody, Event, Kind, OpenBody, canonical,
                                     decode_event, sign_event)
from p2pauction.state.identity import verify_signature
from tests.state_helpers import NET, forge, identity, open_body

IDENT = identity(1)
HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
MONEY = st.decimals(min_value=0, max_value=Decimal("999999999999999999.99999999"), places=8,
                    allow_nan=False, allow_infinity=False)
NAME = st.none() | st.text(min_size=1, max_size=32)


@st.composite
def events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(list(Kind)))
    body: OpenBody | BidBody | CloseBody
    if kind is Kind.OPEN:
        body = OpenBody(draw(st.text(min_size=1, max_size=200)),
                        draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyzUSD", min_size=1, max_size=10)),
                        draw(MONEY), draw(MONEY), draw(st.none() | st.integers(0, 2**63 - 1)), draw(NAME))
        deps: list[str] = []
    elif kind is Kind.BID:
        body = BidBody(draw(HEX64), draw(MONEY), draw(NAME))
        deps = sorted(set(draw(st.lists(HEX64, min_size=1, max_size=32))))
    else:
        body = CloseBody(draw(HEX64), draw(st.none() | HEX64))
        deps = sorted(set(draw(st.lists(HEX64, min_size=1, max_size=32))))
    return sign_event(IDENT, net=draw(st.text(min_size=1, max_size=64)), kind=kind, body=body,
                      deps=deps, lamport=draw(st.integers(1, 2**63 - 1)), ts=draw(st.integers(0, 2**63 - 1)))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_round_trip(event: Event) -> None:
    again = decode_event(event.raw)
    assert again == event
    assert event.raw == canonical(event.to_obj())
    unsigned = {k: v for k, v in json.loads(event.raw).items() if k != "sig"}
    assert event.id == hashlib.sha256(canonical(unsigned)).hexdigest()
    assert event.signing_bytes == SIG_DOMAIN + canonical(unsigned)
    assert verify_signature(event.author, event.sig, event.signing_bytes)


def test_signature_has_domain_separation() -> None:
    e = sign_event(IDENT, net=NET, kind=Kind.OPEN, body=OpenBody("x", "USDt", Decimal(1), Decimal(0), None),
                   deps=(), lamport=1, ts=1)
    assert not verify_signature(e.author, e.sig, e.signing_bytes[len(SIG_DOMAIN):])


def test_optional_name_omitted() -> None:
    e = sign_event(IDENT, net=NET, kind=Kind.BID, body=BidBody("a" * 64, Decimal(1)), deps=("b" * 64,),
                   lamport=2, ts=1)
    assert b'"name"' not in e.raw and e.body.name is None  # type: ignore[union-attr]
    assert e.auction_id == "a" * 64


def test_sign_event_refuses_invalid_content() -> None:
    with pytest.raises(UsageError):
        sign_event(IDENT, net=NET, kind=Kind.BID, body=BidBody("a" * 64, Decimal(1)), deps=(), lamport=2, ts=1)
    with pytest.raises(UsageError):
        sign_event(IDENT, net=NET, kind=Kind.CLOSE, body=BidBody("a" * 64, Decimal(1)), deps=("b" * 64,),
                   lamport=2, ts=1)


def _decodes_or_decode_error(raw: bytes) -> None:
    try:
        event = decode_event(raw)
    except DecodeError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        return
    assert event.raw == raw        # whatever decodes is canonical: re-encoding gives the same bytes
    assert event.raw == canonical(event.to_obj())


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    _decodes_or_decode_error(raw)


VALID = [
    forge(IDENT, kind="auction.open", body={**open_body(), "name": "Zoé"}),
    forge(IDENT, kind="bid.place", body={"auction": "a" * 64, "amount": "75.5"}, deps=["b" * 64], lamport=2),
    forge(IDENT, kind="auction.close", body={"auction": "a" * 64, "winner": None}, deps=["b" * 64, "c" * 64],
          lamport=3),
]


@settings(max_examples=400)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255),
                                                  st.sampled_from(["set", "insert", "delete"])),
                                        min_size=1, max_size=4))
def test_fuzz_mutated_valid_events(raw: bytes, edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(raw)
    for pos, byte, op in edits:
        i = pos % (len(data) + 1)
        if op == "insert":
            data[i:i] = bytes([byte])
        elif data and op == "delete":
            del data[i % len(data)]
        elif data:
            data[i % len(data)] = byte
    _decodes_or_decode_error(bytes(data))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)


@settings(max_examples=200)
@given(st.sampled_from(VALID), st.sampled_from(["net", "kind", "author", "body", "deps", "lamport", "ts",
                                                "sig"]), JSONISH)
def test_fuzz_replaced_fields(raw: bytes, field: str, value: object) -> None:
    obj = json.loads(raw)
    obj[field] = value
    try:
        data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeEncodeError):
        return
    _decodes_or_decode_error(data)


def test_lone_surrogate_is_refused() -> None:
    raw = forge(IDENT, kind="auction.open", body=open_body(item="X")).replace(b'"item":"X"', b'"item":"\\ud800"')
    with pytest.raises(DecodeError):
        decode_event(raw)


def test_deeply_nested_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_event(b"[" * 4000 + b"]" * 4000)


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=300), st.sampled_from(VALID).map(lambda r: r[:-5] + b"}" * 5)))
def test_ledger_never_raises_on_any_bytes(raw: bytes) -> None:
    from p2pauction.state.ledger import Ledger, OutcomeKind

    ledger = Ledger(NET)
    out = ledger.receive_raw(raw)
    assert out.kind in (OutcomeKind.REJECTED, OutcomeKind.PENDING, OutcomeKind.ACCEPTED)
    if out.kind is OutcomeKind.REJECTED:
        assert out.reason is not None
