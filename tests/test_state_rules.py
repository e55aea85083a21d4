"""One test per validity rule of SPEC §2, each showing the exact rejection reason."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from decimal import Decimal

import pytest

from p2pauction.state.events import MAX_EVENT_BYTES, decode_event
from p2pauction.state.ledger import Ledger, OutcomeKind
from p2pauction.state.validation import RejectReason as R
from tests.state_helpers import NET, accept, author, forge, identity, open_body

SELLER, BIDDER, OTHER = identity(1), identity(2), identity(3)


def fresh(start: str = "10", inc: str = "0", ends_at: int | None = None) -> tuple[Ledger, str]:
    ledger = Ledger(NET)
    out = ledger.receive_raw(forge(SELLER, kind="auction.open", body=open_body(start=start, inc=inc,
                                                                               ends_at=ends_at)))
    assert out.kind is OutcomeKind.ACCEPTED and out.event_id is not None
    return ledger, out.event_id


def bid_raw(aid: str, amount: str, deps: list[str], lamport: int, who=BIDDER, ts: int = 1000) -> bytes:  # type: ignore[no-untyped-def]
    return forge(who, kind="bid.place", body={"auction": aid, "amount": amount}, deps=sorted(deps),
                 lamport=lamport, ts=ts)


def rejected(ledger: Ledger, raw: bytes, reason: R) -> None:
    out = ledger.receive_raw(raw)
    assert out.kind is OutcomeKind.REJECTED, out
    assert out.reason is reason
    assert ledger.counters.rejected[reason.value] >= 1
    if out.event_id is not None:
        assert not ledger.has(out.event_id)


def accepted(ledger: Ledger, raw: bytes) -> str:
    out = ledger.receive_raw(raw)
    assert out.kind is OutcomeKind.ACCEPTED, out
    assert out.event_id is not None
    return out.event_id


def test_valid_events_accepted() -> None:
    ledger, aid = fresh()
    b = accepted(ledger, bid_raw(aid, "10", [aid], 2))
    accepted(ledger, forge(SELLER, kind="auction.close", body={"auction": aid, "winner": b}, deps=[b], lamport=3))


def test_forged_signature() -> None:
    ledger, aid = fresh()
    rejected(ledger, forge(BIDDER, kind="bid.place", body={"auction": aid, "amount": "11"}, deps=[aid],
                           lamport=2, sign_as=OTHER), R.BAD_SIGNATURE)
    raw = bytearray(bid_raw(aid, "11", [aid], 2))
    pos = raw.index(b'"sig":"') + 7
    raw[pos] = ord("0") if raw[pos] != ord("0") else ord("1")   # flip a signature character
    rejected(ledger, bytes(raw), R.BAD_SIGNATURE)


def test_bad_signature_does_not_poison_the_genuine_event() -> None:
    ledger, aid = fresh()
    good = bid_raw(aid, "11", [aid], 2)
    forged = forge(BIDDER, kind="bid.place", body={"auction": aid, "amount": "11"}, deps=[aid], lamport=2,
                   sign_as=OTHER)
    rejected(ledger, forged, R.BAD_SIGNATURE)
    accepted(ledger, good)


def test_wrong_net() -> None:
    ledger, aid = fresh()
    rejected(ledger, forge(BIDDER, kind="bid.place", body={"auction": aid, "amount": "11"}, deps=[aid],
                           lamport=2, net="other-net"), R.WRONG_NET)


@pytest.mark.parametrize("mutate", [
    lambda raw: raw.replace(b'","', b'", "', 1),                       # whitespace
    lambda raw: b" " + raw,
    lambda raw: raw + b"\n",
    lambda raw: raw.replace(b'"Pic"', b'"\\u0050ic"'),                 # needless escape
    lambda raw: raw.replace(b'"lamport":1', b'"lamport":1 '),
])
def test_non_canonical_bytes(mutate) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(NET)
    raw = forge(SELLER, kind="auction.open", body=open_body())
    bad = mutate(raw)
    assert bad != raw
    rejected(ledger, bad, R.NON_CANONICAL)


def test_non_canonical_key_order() -> None:
    raw = forge(SELLER, kind="auction.open", body=open_body())
    # move "author" after "body": same JSON object, different bytes
    head, rest = raw[1:].split(b',"body":', 1)
    body, tail = rest.split(b',"deps":', 1)
    reordered = b'{"body":' + body + b"," + head + b',"deps":' + tail
    assert reordered != raw
    rejected(Ledger(NET), reordered, R.NON_CANONICAL)


def test_duplicate_keys_are_not_canonical() -> None:
    raw = forge(SELLER, kind="auction.open", body=open_body())
    rejected(Ledger(NET), raw.replace(b'"ts":1000', b'"ts":1000,"ts":1000'), R.NON_CANONICAL)


@pytest.mark.parametrize("amount", ["7,5", "1e3", "075", "-1", "NaN", "Infinity", "75.50", "75.",
                                    ".5", "", " 75", "1" * 19, "1.123456789", "0x10", "٧٥", "+5"])
def test_bad_money_forms(amount: str) -> None:
    ledger, aid = fresh()
    rejected(ledger, bid_raw(aid, amount, [aid], 2), R.BAD_MONEY)


@pytest.mark.parametrize("field", ["start_price", "min_increment"])
def test_bad_money_in_open(field: str) -> None:
    body = open_body()
    body[field] = "1e3"
    rejected(Ledger(NET), forge(SELLER, kind="auction.open", body=body), R.BAD_MONEY)


def test_money_as_json_number_is_a_bad_field() -> None:
    ledger, aid = fresh()
    raw = bid_raw(aid, "11", [aid], 2).replace(b'"amount":"11"', b'"amount":11')
    assert decode_event_reason(raw) in (R.BAD_MONEY, R.BAD_FIELD)


def decode_event_reason(raw: bytes) -> str:
    from p2pauction.errors import DecodeError

    with pytest.raises(DecodeError) as info:
        decode_event(raw)
    return info.value.reason


def test_non_owner_close() -> None:
    ledger, aid = fresh()
    rejected(ledger, forge(BIDDER, kind="auction.close", body={"auction": aid, "winner": None}, deps=[aid],
                           lamport=2), R.NOT_SELLER)


def test_wrong_winner_named() -> None:
    ledger, aid = fresh()
    b1 = accepted(ledger, bid_raw(aid, "10", [aid], 2))
    b2 = accepted(ledger, bid_raw(aid, "12", [b1], 3, who=OTHER))
    rejected(ledger, forge(SELLER, kind="auction.close", body={"auction": aid, "winner": b1}, deps=[b2],
                           lamport=4), R.WRONG_WINNER)
    rejected(ledger, forge(SELLER, kind="auction.close", body={"auction": aid, "winner": None}, deps=[b2],
                           lamport=4), R.WRONG_WINNER)
    # a winner outside the close's causal past is wrong too, even if it is the best bid known
    rejected(ledger, forge(SELLER, kind="auction.close", body={"auction": aid, "winner": b2}, deps=[aid],
                           lamport=2), R.WRONG_WINNER)
    accepted(ledger, forge(SELLER, kind="auction.close", body={"auction": aid, "winner": b2}, deps=[b2],
                           lamport=4))


def test_bid_by_the_seller() -> None:
    ledger, aid = fresh()
    rejected(ledger, bid_raw(aid, "11", [aid], 2, who=SELLER), R.SELLER_BID)


def test_bid_below_start() -> None:
    ledger, aid = fresh(start="10")
    rejected(ledger, bid_raw(aid, "9.99999999", [aid], 2), R.BELOW_START)
    accepted(ledger, bid_raw(aid, "10", [aid], 2))


def test_bid_not_above_best_in_its_past() -> None:
    ledger, aid = fresh()
    b1 = accepted(ledger, bid_raw(aid, "20", [aid], 2))
    rejected(ledger, bid_raw(aid, "20", [b1], 3, who=OTHER), R.NOT_ABOVE_BEST)
    rejected(ledger, bid_raw(aid, "15", [b1], 3, who=OTHER), R.NOT_ABOVE_BEST)
    # a concurrent lower bid (b1 not in its past) is valid: validity reads the causal past only
    accepted(ledger, bid_raw(aid, "15", [aid], 2, who=OTHER))


def test_bid_below_increment() -> None:
    ledger, aid = fresh(inc="0.5")
    b1 = accepted(ledger, bid_raw(aid, "20", [aid], 2))
    rejected(ledger, bid_raw(aid, "20.4", [b1], 3, who=OTHER), R.BELOW_INCREMENT)
    accepted(ledger, bid_raw(aid, "20.5", [b1], 3, who=OTHER))


def test_bid_after_close_in_its_past() -> None:
    ledger, aid = fresh()
    close = accepted(ledger, forge(SELLER, kind="auction.close", body={"auction": aid, "winner": None},
                                   deps=[aid], lamport=2))
    rejected(ledger, bid_raw(aid, "11", [close], 3), R.AUCTION_CLOSED)
    # a second close with the first in its past is refused the same way
    rejected(ledger, forge(SELLER, kind="auction.close", body={"auction": aid, "winner": None},
                           deps=[close], lamport=3), R.AUCTION_CLOSED)


def test_bid_claiming_a_time_after_ends_at() -> None:
    ledger, aid = fresh(ends_at=5000)
    rejected(ledger, bid_raw(aid, "11", [aid], 2, ts=5001), R.AFTER_END)
    accepted(ledger, bid_raw(aid, "11", [aid], 2, ts=5000))


def test_open_ending_before_it_opens() -> None:
    rejected(Ledger(NET), forge(SELLER, kind="auction.open", body=open_body(ends_at=1000), ts=1000),
             R.ENDS_BEFORE_OPEN)


@pytest.mark.parametrize("lamport", [1, 3, 100])
def test_lamport_not_exact(lamport: int) -> None:
    ledger, aid = fresh()
    rejected(ledger, bid_raw(aid, "11", [aid], lamport), R.BAD_LAMPORT)


def test_open_lamport_must_be_one() -> None:
    rejected(Ledger(NET), forge(SELLER, kind="auction.open", body=open_body(), lamport=2), R.BAD_LAMPORT)


def test_unknown_dep_waits_in_pending() -> None:
    ledger, aid = fresh()
    ghost = hashlib.sha256(b"never").hexdigest()
    out = ledger.receive_raw(bid_raw(aid, "11", [ghost], 2))
    assert out.kind is OutcomeKind.PENDING and not ledger.has(out.event_id or "")
    assert ledger.counters.pending == 1


def test_cross_auction_dep_known() -> None:
    ledger, a1 = fresh()
    a2 = accepted(ledger, forge(OTHER, kind="auction.open", body=open_body(item="Other")))
    rejected(ledger, bid_raw(a1, "11", [a2], 2), R.CROSS_AUCTION_DEP)
    rejected(ledger, bid_raw(a1, "11", sorted([a1, a2]), 2), R.CROSS_AUCTION_DEP)


def test_cross_auction_dep_discovered_when_it_arrives() -> None:
    ledger, a1 = fresh()
    other_open = forge(OTHER, kind="auction.open", body=open_body(item="Other"))
    a2 = decode_event(other_open).id
    out = ledger.receive_raw(bid_raw(a1, "11", [a2], 2))
    assert out.kind is OutcomeKind.PENDING
    accepted(ledger, other_open)
    assert ledger.counters.rejected == {R.CROSS_AUCTION_DEP.value: 1}
    assert ledger.counters.pending == 0


def test_dependants_of_a_rejected_event_are_rejected() -> None:
    ledger, aid = fresh()
    bad = bid_raw(aid, "5", [aid], 2)                     # below start
    bad_id = decode_event(bad).id
    child = bid_raw(aid, "20", [bad_id], 3, who=OTHER)
    assert ledger.receive_raw(child).kind is OutcomeKind.PENDING
    rejected(ledger, bad, R.BELOW_START)
    assert ledger.counters.rejected.get(R.INVALID_DEP.value) == 1
    assert ledger.counters.pending == 0
    # and a later event depending on it fails at once instead of waiting
    rejected(ledger, bid_raw(aid, "30", [bad_id], 3), R.INVALID_DEP)


def test_oversize_event_checked_before_parsing() -> None:
    ledger = Ledger(NET)
    rejected(ledger, b"{" * (MAX_EVENT_BYTES + 1), R.OVERSIZE)   # not JSON: size wins
    body = open_body(item="x" * 200)
    body["name"] = "n" * 32
    big = forge(SELLER, kind="auction.open", body=body)
    assert len(big) < MAX_EVENT_BYTES                        # the format itself keeps events small
    padded = forge(SELLER, kind="auction.open", body=open_body(), net="n" * 64) + b" " * MAX_EVENT_BYTES
    rejected(ledger, padded, R.OVERSIZE)


@pytest.mark.parametrize("deps_of", [
    lambda aid, b: [aid, aid],            # duplicate
    lambda aid, b: sorted([aid, b])[::-1],  # unsorted
    lambda aid, b: [],                    # empty for a bid
])
def test_bad_deps(deps_of) -> None:  # type: ignore[no-untyped-def]
    ledger, aid = fresh()
    b = accepted(ledger, bid_raw(aid, "10", [aid], 2))
    raw = forge(OTHER, kind="bid.place", body={"auction": aid, "amount": "50"}, deps=deps_of(aid, b), lamport=3)
    rejected(ledger, raw, R.BAD_DEPS)


def test_too_many_deps_and_deps_on_open() -> None:
    ledger, aid = fresh()
    many = sorted(hashlib.sha256(bytes([i])).hexdigest() for i in range(33))
    rejected(ledger, forge(OTHER, kind="bid.place", body={"auction": aid, "amount": "50"}, deps=many,
                           lamport=2), R.BAD_DEPS)
    rejected(ledger, forge(OTHER, kind="auction.open", body=open_body(), deps=[aid], lamport=2), R.BAD_DEPS)


@pytest.mark.parametrize("change", [
    lambda o: o.update(lamport=True),            # bool is not an int
    lambda o: o.update(ts=-1),
    lambda o: o.update(kind="auction.reopen"),
    lambda o: o.update(author="AB" * 32),        # uppercase hex
    lambda o: o.update(extra=1),
    lambda o: o.pop("ts"),
    lambda o: o["body"].update(name=None),       # absent names are omitted, not null
    lambda o: o["body"].update(currency="US$"),
    lambda o: o["body"].update(item=""),
    lambda o: o["body"].update(ends_at="tomorrow"),
])
def test_bad_fields(change) -> None:  # type: ignore[no-untyped-def]
    import json

    from p2pauction.state.events import canonical

    obj = json.loads(forge(SELLER, kind="auction.open", body=open_body()))
    change(obj)
    assert decode_event_reason(canonical(obj)) == R.BAD_FIELD


def test_float_is_rejected() -> None:
    raw = forge(SELLER, kind="auction.open", body=open_body()).replace(b'"ts":1000', b'"ts":1000.0')
    assert decode_event_reason(raw) == R.BAD_FIELD


def test_authoring_matches_the_ledger_rules() -> None:
    from p2pauction.errors import RuleViolation

    ledger = Ledger(NET)
    seller, bidder = author(1, "S"), author(2, "B")
    aid = accept(ledger, seller.open(ledger, item="Pic", start_price=Decimal(10),
                                     min_increment=Decimal("0.5"), ends_at=9000, wall_ms=1000)).id
    cases: list[tuple[Callable[[], object], R, str]] = [
        (lambda: seller.bid(ledger, aid, Decimal(20), wall_ms=1001), R.SELLER_BID, "own auction"),
        (lambda: bidder.bid(ledger, aid, Decimal(9), wall_ms=1001), R.BELOW_START, "minimum is 10 USDt"),
        (lambda: bidder.bid(ledger, aid, Decimal(20), wall_ms=9001), R.AFTER_END, "ended"),
        (lambda: bidder.close(ledger, aid, wall_ms=1001), R.NOT_SELLER, "only the seller"),
    ]
    for call, reason, text in cases:
        with pytest.raises(RuleViolation) as info:
            call()
        assert info.value.reason == reason and text in str(info.value)
    accept(ledger, bidder.bid(ledger, aid, Decimal(80), wall_ms=1002))
    with pytest.raises(RuleViolation) as info:
        author(3).bid(ledger, aid, Decimal("80.4"), wall_ms=1003)
    assert info.value.reason == R.BELOW_INCREMENT and "bid too low: the minimum is 80.5 USDt" in str(info.value)
    accept(ledger, seller.close(ledger, aid, wall_ms=1004))
    with pytest.raises(RuleViolation) as info:
        author(3).bid(ledger, aid, Decimal(100), wall_ms=1005)
    assert info.value.reason == R.AUCTION_CLOSED
    with pytest.raises(RuleViolation) as info:
        seller.close(ledger, aid, wall_ms=1006)
    assert info.value.reason == R.AUCTION_CLOSED


def test_authoring_without_increment_states_the_minimum() -> None:
    from p2pauction.errors import RuleViolation

    ledger = Ledger(NET)
    aid = accept(ledger, author(1).open(ledger, item="Pic", start_price=Decimal(75), wall_ms=1)).id
    accept(ledger, author(2).bid(ledger, aid, Decimal(80), wall_ms=2))
    with pytest.raises(RuleViolation) as info:
        author(3).bid(ledger, aid, Decimal(80), wall_ms=3)
    assert "minimum is 80.00000001 USDt" in str(info.value) and info.value.reason == R.NOT_ABOVE_BEST
