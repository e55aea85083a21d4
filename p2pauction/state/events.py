"""Signed auction events: canonical encoding, ids, signatures (SPEC §2).

Canonical bytes are ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8. ``decode_event`` accepts only that exact encoding, so every event has one byte
string, one id, and one signature message. The signature is *not* checked here (the ledger does
it through a verifier, so it can be cached and counted).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from p2pauction.errors import DecodeError, UsageError
from p2pauction.state.money import MONEY_RE, format_money, is_currency
from p2pauction.state.validation import RejectReason as R

MAX_EVENT_BYTES = 8192
MAX_DEPS = 32
MAX_ITEM_CHARS = 200
MAX_NAME_CHARS = 32
MAX_NET_CHARS = 64
MAX_INT = 2**63 - 1
SIG_DOMAIN = b"p2pauction/v1\0"

_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_HEX128 = re.compile(r"[0-9a-f]{128}", re.ASCII)
_FIELDS = frozenset(("net", "kind", "author", "body", "deps", "lamport", "ts", "sig"))


class Kind(StrEnum):
    OPEN = "auction.open"
    BID = "bid.place"
    CLOSE = "auction.close"


@dataclass(frozen=True, slots=True)
class OpenBody:
    item: str
    currency: str
    start_price: Decimal
    min_increment: Decimal
    ends_at: int | None
    name: str | None = None

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"item": self.item, "currency": self.currency,
                               "start_price": format_money(self.start_price),
                               "min_increment": format_money(self.min_increment),
                               "ends_at": self.ends_at}
        if self.name is not None:
            obj["name"] = self.name
        return obj


@dataclass(frozen=True, slots=True)
class BidBody:
    auction: str
    amount: Decimal
    name: str | None = None

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"auction": self.auction, "amount": format_money(self.amount)}
        if self.name is not None:
            obj["name"] = self.name
        return obj


@dataclass(frozen=True, slots=True)
class CloseBody:
    auction: str
    winner: str | None

    def to_obj(self) -> dict[str, Any]:
        return {"auction": self.auction, "winner": self.winner}


Body = OpenBody | BidBody | CloseBody
_BODY_TYPE: dict[Kind, type] = {Kind.OPEN: OpenBody, Kind.BID: BidBody, Kind.CLOSE: CloseBody}


@dataclass(frozen=True, slots=True)
class Event:
    """One signed event. Build with ``sign_event`` or ``decode_event`` only (they are canonical)."""

    net: str
    kind: Kind
    author: str
    body: Body
    deps: tuple[str, ...]
    lamport: int
    ts: int
    sig: bytes
    id: str          # sha256 hex of the canonical bytes without sig
    raw: bytes       # canonical bytes with sig (wire and store form)

    @property
    def auction_id(self) -> str:
        if isinstance(self.body, OpenBody):
            return self.id
        return self.body.auction

    @property
    def signing_bytes(self) -> bytes:
        return SIG_DOMAIN + unsigned_from_raw(self.raw)

    def to_obj(self) -> dict[str, Any]:
        return {**_unsigned_obj(self.net, self.kind, self.author, self.body, self.deps,
                                self.lamport, self.ts), "sig": self.sig.hex()}

    def __repr__(self) -> str:
        return f"Event({self.kind.value} {self.id[:12]} by {self.author[:8]} lamport={self.lamport})"


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(obj: Any) -> bytes:
    """The canonical encoding of a JSON object (same as json.dumps(obj, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False).encode())."""
    return _ENCODER.encode(obj).encode("utf-8")


def _unsigned_obj(net: str, kind: Kind, author: str, body: Body, deps: tuple[str, ...],
                  lamport: int, ts: int) -> dict[str, Any]:
    return {"net": net, "kind": kind.value, "author": author, "body": body.to_obj(),
            "deps": list(deps), "lamport": lamport, "ts": ts}


def unsigned_from_raw(raw: bytes) -> bytes:
    # Keys are sorted, so "sig" sits between "net" and "ts": `,"sig":"<128 hex>"` — a `"` inside a
    # JSON string is always escaped, so this byte pattern only occurs as structure.
    start = raw.rindex(b',"sig":"')
    return raw[:start] + raw[start + 8 + 128 + 1:]


def event_id_of(unsigned: bytes) -> str:
    return hashlib.sha256(unsigned).hexdigest()


def sign_event(identity: Any, *, net: str, kind: Kind, body: Body, deps: tuple[str, ...] | list[str],
               lamport: int, ts: int) -> Event:
    """Sign and encode a new event; UsageError if the result would not decode."""
    kind = Kind(kind)
    deps = tuple(deps)
    if not isinstance(body, _BODY_TYPE[kind]):
        raise UsageError(f"a {kind.value} event needs a {_BODY_TYPE[kind].__name__}")
    obj = _unsigned_obj(net, kind, identity.public_hex, body, deps, lamport, ts)
    unsigned = canonical(obj)
    sig = identity.sign(SIG_DOMAIN + unsigned)
    obj["sig"] = sig.hex()
    raw = canonical(obj)
    try:
        return decode_event(raw)
    except DecodeError as exc:
        raise UsageError(f"cannot build this event: {exc}") from None


def _fail(reason: R, message: str) -> DecodeError:
    return DecodeError(message, reason=reason)


def _no_float(text: str) -> Any:
    raise _fail(R.BAD_FIELD, f"numbers must be integers, got {text}")


def _no_constant(text: str) -> Any:
    raise _fail(R.MALFORMED, f"{text} is not JSON")


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_constant)


def _is_int(value: object, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi


def _text(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, str) and lo <= len(value) <= hi


def _hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _money(obj: dict[str, Any], key: str) -> Decimal:
    value = obj.get(key)
    if not isinstance(value, str) or MONEY_RE.fullmatch(value) is None:
        raise _fail(R.BAD_MONEY, f"{key} {value!r} is not a canonical money amount")
    return Decimal(value)


def _name(obj: dict[str, Any]) -> str | None:
    if "name" not in obj:
        return None
    name = obj["name"]
    if not _text(name, 1, MAX_NAME_CHARS):
        raise _fail(R.BAD_FIELD, f"name must be 1-{MAX_NAME_CHARS} characters")
    return str(name)


def _keys(obj: object, required: frozenset[str], allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(R.BAD_FIELD, f"{what} must be an object")
    keys = obj.keys()
    if not required <= keys or not keys <= allowed:
        raise _fail(R.BAD_FIELD, f"{what} must have fields {sorted(required)}"
                    + (f" (optional {sorted(allowed - required)})" if allowed != required else "")
                    + f", got {sorted(keys)}")
    return obj


_OPEN_REQ = frozenset(("item", "currency", "start_price", "min_increment", "ends_at"))
_OPEN_ALL = _OPEN_REQ | {"name"}
_BID_REQ = frozenset(("auction", "amount"))
_BID_ALL = _BID_REQ | {"name"}
_CLOSE_REQ = frozenset(("auction", "winner"))


def _parse_body(kind: Kind, obj: object) -> Body:
    if kind is Kind.OPEN:
        b = _keys(obj, _OPEN_REQ, _OPEN_ALL, "open body")
        if not _text(b["item"], 1, MAX_ITEM_CHARS):
            raise _fail(R.BAD_FIELD, f"item must be 1-{MAX_ITEM_CHARS} characters")
        if not is_currency(b["currency"]):
            raise _fail(R.BAD_FIELD, "currency must be 1-10 ASCII letters")
        ends_at = b["ends_at"]
        if ends_at is not None and not _is_int(ends_at, 0, MAX_INT):
            raise _fail(R.BAD_FIELD, "ends_at must be integer milliseconds or null")
        return OpenBody(b["item"], b["currency"], _money(b, "start_price"), _money(b, "min_increment"),
                        ends_at, _name(b))
    if kind is Kind.BID:
        b = _keys(obj, _BID_REQ, _BID_ALL, "bid body")
        if not _hex64(b["auction"]):
            raise _fail(R.BAD_FIELD, "auction must be an event id (64 lowercase hex)")
        return BidBody(b["auction"], _money(b, "amount"), _name(b))
    b = _keys(obj, _CLOSE_REQ, _CLOSE_REQ, "close body")
    if not _hex64(b["auction"]):
        raise _fail(R.BAD_FIELD, "auction must be an event id (64 lowercase hex)")
    if b["winner"] is not None and not _hex64(b["winner"]):
        raise _fail(R.BAD_FIELD, "winner must be a bid id (64 lowercase hex) or null")
    return CloseBody(b["auction"], b["winner"])


def _parse_deps(kind: Kind, deps: object) -> tuple[str, ...]:
    if not isinstance(deps, list):
        raise _fail(R.BAD_FIELD, "deps must be a list of event ids")
    match = _HEX64.fullmatch
    for d in deps:
        if type(d) is not str or match(d) is None:
            raise _fail(R.BAD_FIELD, "deps must be a list of event ids")
    if kind is Kind.OPEN:
        if deps:
            raise _fail(R.BAD_DEPS, "an auction.open has no deps")
        return ()
    if not deps:
        raise _fail(R.BAD_DEPS, f"a {kind.value} needs at least one dep")
    if len(deps) > MAX_DEPS:
        raise _fail(R.BAD_DEPS, f"at most {MAX_DEPS} deps, got {len(deps)}")
    if any(a >= b for a, b in zip(deps, deps[1:])):
        raise _fail(R.BAD_DEPS, "deps must be sorted and distinct")
    return tuple(deps)


def decode_event(raw: bytes) -> Event:
    """Decode one event; DecodeError(reason=RejectReason...) unless it is well formed and canonical."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _fail(R.MALFORMED, "an event must be bytes")
    if len(raw) > MAX_EVENT_BYTES:  # before parsing: never spend work on oversize input
        raise _fail(R.OVERSIZE, f"event of {len(raw)} bytes is over the {MAX_EVENT_BYTES}-byte limit")
    raw = bytes(raw)
    try:
        text = raw.decode("utf-8")
        obj = _DECODER.decode(text)
    except DecodeError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail(R.MALFORMED, "not UTF-8 JSON") from None
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        raise _fail(R.BAD_FIELD, f"an event is an object with fields {sorted(_FIELDS)}")
    net, kind_text, author, sig_hex = obj["net"], obj["kind"], obj["author"], obj["sig"]
    if not _text(net, 1, MAX_NET_CHARS):
        raise _fail(R.BAD_FIELD, f"net must be 1-{MAX_NET_CHARS} characters")
    try:
        kind = Kind(kind_text)
    except ValueError:
        raise _fail(R.BAD_FIELD, f"unknown kind {kind_text!r}") from None
    if not _hex64(author):
        raise _fail(R.BAD_FIELD, "author must be a public key (64 lowercase hex)")
    if not isinstance(sig_hex, str) or _HEX128.fullmatch(sig_hex) is None:
        raise _fail(R.BAD_FIELD, "sig must be 128 lowercase hex characters")
    lamport, ts = obj["lamport"], obj["ts"]
    if not _is_int(lamport, 1, MAX_INT):
        raise _fail(R.BAD_FIELD, "lamport must be a positive integer")
    if not _is_int(ts, 0, MAX_INT):
        raise _fail(R.BAD_FIELD, "ts must be non-negative integer milliseconds")
    deps = _parse_deps(kind, obj["deps"])
    body = _parse_body(kind, obj["body"])
    try:
        again = canonical(obj)
    except UnicodeEncodeError:  # lone surrogates from \ud800 escapes
        raise _fail(R.NON_CANONICAL, "strings must be valid Unicode") from None
    if again != raw:
        raise _fail(R.NON_CANONICAL, "event is not in canonical form (sorted keys, no spaces, "
                    "minimal escapes)")
    unsigned = unsigned_from_raw(raw)
    return Event(net, kind, author, body, deps, lamport, ts, bytes.fromhex(sig_hex),
                 event_id_of(unsigned), raw)


def decode_stored(raw: bytes, event_id: str) -> Event:
    """An event this node itself decoded (decode_event: every field and the canonical form
    checked), verified and stored under ``event_id``: parsed again without those checks, ~4x
    faster (reading an evicted auction back from the store)."""
    obj = _DECODER.decode(raw.decode("utf-8"))
    kind = Kind(obj["kind"])
    b = obj["body"]
    body: Body
    if kind is Kind.OPEN:
        body = OpenBody(b["item"], b["currency"], Decimal(b["start_price"]), Decimal(b["min_increment"]),
                        b["ends_at"], b.get("name"))
    elif kind is Kind.BID:
        body = BidBody(b["auction"], Decimal(b["amount"]), b.get("name"))
    else:
        body = CloseBody(b["auction"], b["winner"])
    return Event(obj["net"], kind, obj["author"], body, tuple(obj["deps"]), obj["lamport"], obj["ts"],
                 bytes.fromhex(obj["sig"]), event_id, raw)
