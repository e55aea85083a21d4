"""The wire messages: one frozen dataclass per message type, with strict field validation.

``parse_message`` turns a decoded frame (a dict) into a message or raises
:class:`~p2pauction.errors.DecodeError` (a ProtocolError) naming the bad field; every string is
length-checked and every list bounded, so nothing a peer sends can make a handler allocate
without bound. ``Message.to_wire()`` is the inverse. See ``docs/protocol.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from p2pauction.errors import DecodeError
from p2pauction.gossip.riblt import MAX_BATCH_SYMBOLS, SymbolBatch

PROTOCOL_VERSION = 2

# Bounds on every list a message may carry (docs/protocol.md repeats them).
MAX_PEERS = 64          # peer samples (shuffle, discovery)
MAX_IDS = 512           # ids in IHAVE / GRAFT / WANT
MAX_TREE_NODES = 64     # anti-entropy tree nodes per TREE message
MAX_LEAVES = 64         # anti-entropy leaves per IDS message
MAX_LEAF_IDS = 512      # ids listed per leaf
MAX_PREFIXES = 64       # prefixes per WANTP
MAX_EVENTS = 128        # events per EVENTS message
MAX_EVENT_TEXT = 8192   # characters of one event's JSON text (the ledger checks the byte size)
MAX_REASON = 200
MAX_NET = 64
MAX_HOPS = 1024
MAX_ANCESTOR_IDS = 64   # starting ids per WANTA (missing deps of pending events)
MAX_HELD_HEX = 16384    # hex digits of a WANTA's filter of held ids (8 KiB, 65536 bits)

HEX64 = re.compile(r"[0-9a-f]{64}\Z")
# A whole id list joined by commas, checked in one regex call. With the length check in _ids (one
# comma per joint and no more), an entry holding a comma cannot pass for two ids.
_HEX64_LIST = re.compile(r"(?:[0-9a-f]{64},)*[0-9a-f]{64}\Z")
HEX128 = re.compile(r"[0-9a-f]{128}\Z")
ADDR_RE = re.compile(r"(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9.\-]{1,253}):([0-9]{1,5})\Z")
PREFIX_RE = re.compile(r"[0-9a-f]{0,8}\Z")
_HEX_ANY = re.compile(r"[0-9a-f]*\Z")
ROOT_RE = re.compile(r"[0-9a-f]{24}\Z")
FPS_RE = re.compile(r"[0-9a-f]{256}\Z")


def _bad(t: str, field: str, why: str) -> DecodeError:
    return DecodeError(f"{t} message: field {field!r} {why}", reason=f"bad_{t}")


def _str(d: dict[str, Any], t: str, f: str, max_len: int, pattern: re.Pattern[str] | None = None) -> str:
    v = d.get(f)
    if not isinstance(v, str):
        raise _bad(t, f, "must be a string")
    if len(v) > max_len:
        raise _bad(t, f, f"is longer than {max_len} characters")
    if pattern is not None and not pattern.match(v):
        raise _bad(t, f, "has the wrong format")
    return v


def _int(d: dict[str, Any], t: str, f: str, lo: int, hi: int) -> int:
    v = d.get(f)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _bad(t, f, f"must be an integer in [{lo}, {hi}]")
    return v


def _list(d: dict[str, Any], t: str, f: str, max_len: int) -> list[Any]:
    v = d.get(f)
    if not isinstance(v, list):
        raise _bad(t, f, "must be a list")
    if len(v) > max_len:
        raise _bad(t, f, f"has more than {max_len} entries")
    return v


def _ids(d: dict[str, Any], t: str, f: str, max_len: int = MAX_IDS) -> tuple[str, ...]:
    v = _list(d, t, f, max_len)
    if not v:
        return ()
    try:
        joined = ",".join(v)
    except TypeError:  # an entry that is not a string
        raise _bad(t, f, "must hold 64-hex-character ids") from None
    if len(joined) != 65 * len(v) - 1 or not _HEX64_LIST.match(joined):
        raise _bad(t, f, "must hold 64-hex-character ids")
    return tuple(v)


def valid_addr(addr: object) -> bool:
    """``host:port`` with a plausible host and a port in 1..65535."""
    if not isinstance(addr, str) or len(addr) > 260:
        return False
    m = ADDR_RE.match(addr)
    return m is not None and 0 < int(m.group(2)) <= 65535


def _peers(d: dict[str, Any], t: str, f: str) -> tuple[tuple[str, str], ...]:
    out = []
    for x in _list(d, t, f, MAX_PEERS):
        if (not isinstance(x, list) or len(x) != 2 or not isinstance(x[0], str)
                or not HEX64.match(x[0]) or not valid_addr(x[1])):
            raise _bad(t, f, "must hold [key, 'host:port'] pairs")
        out.append((x[0], x[1]))
    return tuple(out)


def _addr_or_none(d: dict[str, Any], t: str, f: str) -> str | None:
    v = d.get(f)
    if v is None:
        return None
    if not valid_addr(v):
        raise _bad(t, f, "must be 'host:port' or null")
    return str(v)


@dataclass(frozen=True, slots=True)
class Message:
    T: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Message:
        raise NotImplementedError


# --- link: handshake and liveness -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Error(Message):
    T: ClassVar[str] = "error"
    reason: str

    def to_wire(self) -> dict[str, Any]:
        # A reason may quote peer input: never let a lone surrogate break the encoder.
        reason = self.reason[:MAX_REASON].encode("utf-8", "replace").decode("utf-8")
        return {"t": self.T, "reason": reason}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Error:
        v = d.get("reason")
        return cls(reason=v[:MAX_REASON] if isinstance(v, str) else "?")


@dataclass(frozen=True, slots=True)
class Ping(Message):
    T: ClassVar[str] = "ping"
    n: int

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "n": self.n}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Ping:
        return cls(n=_int(d, cls.T, "n", 0, 1 << 53))


@dataclass(frozen=True, slots=True)
class Pong(Message):
    T: ClassVar[str] = "pong"
    n: int

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "n": self.n}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Pong:
        return cls(n=_int(d, cls.T, "n", 0, 1 << 53))


# --- membership ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Shuffle(Message):
    T: ClassVar[str] = "shuffle"
    peers: tuple[tuple[str, str], ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "peers": [list(p) for p in self.peers]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Shuffle:
        return cls(peers=_peers(d, cls.T, "peers"))


@dataclass(frozen=True, slots=True)
class ShuffleReply(Message):
    T: ClassVar[str] = "shuffle_reply"
    peers: tuple[tuple[str, str], ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "peers": [list(p) for p in self.peers]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ShuffleReply:
        return cls(peers=_peers(d, cls.T, "peers"))


# --- discovery -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Register(Message):
    T: ClassVar[str] = "register"
    key: str
    addr: str | None

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "key": self.key, "addr": self.addr}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Register:
        return cls(key=_str(d, cls.T, "key", 64, HEX64), addr=_addr_or_none(d, cls.T, "addr"))


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    T: ClassVar[str] = "heartbeat"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Heartbeat:
        return cls()


@dataclass(frozen=True, slots=True)
class Sample(Message):
    T: ClassVar[str] = "sample"
    n: int

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "n": self.n}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Sample:
        return cls(n=_int(d, cls.T, "n", 1, MAX_PEERS))


@dataclass(frozen=True, slots=True)
class Peers(Message):
    T: ClassVar[str] = "peers"
    peers: tuple[tuple[str, str], ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "peers": [list(p) for p in self.peers]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Peers:
        return cls(peers=_peers(d, cls.T, "peers"))


# --- dissemination (Plumtree) ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EventMsg(Message):
    T: ClassVar[str] = "event"
    e: str   # the event's canonical JSON text (byte-exact: e.encode() == event.raw)
    h: int   # hops travelled so far

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "e": self.e, "h": self.h}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> EventMsg:
        return cls(e=_str(d, cls.T, "e", MAX_EVENT_TEXT), h=_int(d, cls.T, "h", 0, MAX_HOPS))


@dataclass(frozen=True, slots=True)
class IHave(Message):
    T: ClassVar[str] = "ihave"
    ids: tuple[str, ...]
    hs: tuple[int, ...] = ()  # the announcer's hop count per id (optional; MAX_HOPS = unknown)

    def to_wire(self) -> dict[str, Any]:
        if self.hs:
            return {"t": self.T, "ids": list(self.ids), "hs": list(self.hs)}
        return {"t": self.T, "ids": list(self.ids)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> IHave:
        ids = _ids(d, cls.T, "ids")
        if d.get("hs") is None:
            return cls(ids=ids)
        hs = _list(d, cls.T, "hs", MAX_IDS)
        if len(hs) != len(ids) or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= MAX_HOPS
                                          for h in hs):
            raise _bad(cls.T, "hs", f"must hold one hop count (0..{MAX_HOPS}) per id")
        return cls(ids=ids, hs=tuple(hs))


@dataclass(frozen=True, slots=True)
class Graft(Message):
    T: ClassVar[str] = "graft"
    ids: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "ids": list(self.ids)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Graft:
        return cls(ids=_ids(d, cls.T, "ids"))


@dataclass(frozen=True, slots=True)
class Prune(Message):
    T: ClassVar[str] = "prune"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Prune:
        return cls()


# --- anti-entropy ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sync(Message):
    """Opens a round: the root summary, fixed width (16 hex fingerprint + 8 hex count)."""
    T: ClassVar[str] = "sync"
    r: str

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "r": self.r}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Sync:
        return cls(r=_str(d, cls.T, "r", 24, ROOT_RE))


@dataclass(frozen=True, slots=True)
class TreeNode:
    prefix: str
    fps: str                 # 16 children x 16 hex fingerprint, concatenated (256 chars)
    counts: tuple[int, ...]  # 16 children counts


@dataclass(frozen=True, slots=True)
class Tree(Message):
    T: ClassVar[str] = "tree"
    nodes: tuple[TreeNode, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "n": [[n.prefix, n.fps, list(n.counts)] for n in self.nodes]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Tree:
        nodes = []
        for x in _list(d, cls.T, "n", MAX_TREE_NODES):
            if (not isinstance(x, list) or len(x) != 3 or not isinstance(x[0], str)
                    or not PREFIX_RE.match(x[0]) or not isinstance(x[1], str) or not FPS_RE.match(x[1])
                    or not isinstance(x[2], list) or len(x[2]) != 16
                    or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1 << 40
                               for c in x[2])):
                raise _bad(cls.T, "n", "must hold [prefix, 256-hex fingerprints, 16 counts]")
            nodes.append(TreeNode(x[0], x[1], tuple(x[2])))
        return cls(nodes=tuple(nodes))


@dataclass(frozen=True, slots=True)
class Ids(Message):
    T: ClassVar[str] = "ids"
    leaves: tuple[tuple[str, tuple[str, ...]], ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "l": [[p, list(ids)] for p, ids in self.leaves]}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Ids:
        leaves = []
        for x in _list(d, cls.T, "l", MAX_LEAVES):
            if not isinstance(x, list) or len(x) != 2 or not isinstance(x[0], str) or not PREFIX_RE.match(x[0]):
                raise _bad(cls.T, "l", "must hold [prefix, ids] pairs")
            leaves.append((x[0], _ids({"ids": x[1]}, cls.T, "ids", MAX_LEAF_IDS)))
        return cls(leaves=tuple(leaves))


@dataclass(frozen=True, slots=True)
class Want(Message):
    T: ClassVar[str] = "want"
    ids: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "ids": list(self.ids)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Want:
        return cls(ids=_ids(d, cls.T, "ids"))


@dataclass(frozen=True, slots=True)
class WantAncestors(Message):
    """Send me these events and their ancestors, walking back breadth-first (catch-up of a chain)."""

    T: ClassVar[str] = "wanta"
    ids: tuple[str, ...]
    held: str = ""   # hex Bloom filter of ids the asker already holds: the walk stops there

    def __post_init__(self) -> None:
        if len(self.held) > MAX_HELD_HEX or len(self.held) % 2 or not _HEX_ANY.match(self.held):
            raise _bad(self.T, "h", f"must be an even number of hex digits, at most {MAX_HELD_HEX}")

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "ids": list(self.ids), "h": self.held}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> WantAncestors:
        held = d.get("h", "")
        if not isinstance(held, str):
            raise _bad(cls.T, "h", "must be a hex string")
        return cls(ids=_ids(d, cls.T, "ids", MAX_ANCESTOR_IDS), held=held)


@dataclass(frozen=True, slots=True)
class WantPrefix(Message):
    T: ClassVar[str] = "wantp"
    prefixes: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "p": list(self.prefixes)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> WantPrefix:
        v = _list(d, cls.T, "p", MAX_PREFIXES)
        if not all(isinstance(x, str) and PREFIX_RE.match(x) for x in v):
            raise _bad(cls.T, "p", "must hold hex prefixes")
        return cls(prefixes=tuple(v))


@dataclass(frozen=True, slots=True)
class Events(Message):
    T: ClassVar[str] = "events"
    es: tuple[str, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "es": list(self.es)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Events:
        v = _list(d, cls.T, "es", MAX_EVENTS)
        if not all(isinstance(x, str) and len(x) <= MAX_EVENT_TEXT for x in v):
            raise _bad(cls.T, "es", f"must hold event texts of at most {MAX_EVENT_TEXT} characters")
        return cls(es=tuple(v))


MESSAGE_TYPES: dict[str, type[Message]] = {
    c.T: c for c in (Error, Ping, Pong, Shuffle, ShuffleReply, Register, Heartbeat,
                     Sample, Peers, EventMsg, IHave, Graft, Prune, Sync, Tree, Ids, Want,
                     WantAncestors, WantPrefix, Events)
}


def parse_message(d: dict[str, Any]) -> Message:
    """Validate a decoded frame into its message dataclass; DecodeError on anything wrong."""
    cls = MESSAGE_TYPES.get(d.get("t"))  # type: ignore[arg-type]
    if cls is None:
        raise DecodeError(f"unknown message type {str(d.get('t'))[:32]!r}", reason="unknown_type")
    return cls.from_wire(d)


# --- binary messages: anti-entropy v2 (docs/protocol.md, "Anti-entropy v2") -------------------
#
# Coded symbols are 41 random-looking bytes each: as JSON hex they would double. A binary body
# starts with byte 0x00 (a JSON body always starts with "{"), then a type byte, then fixed-width
# big-endian fields. Decoding is strict: every length is checked, and any other byte string is a
# DecodeError (so the link closes with a protocol violation, as for a malformed JSON message).

BINARY_TAG = 0x00
MAX_WANT_PREFIXES = 512   # id prefixes per RWANT frame (more: several frames)
WANT_PREFIX_BYTES = 8     # bytes of an id named in RWANT


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "big")


@dataclass(frozen=True, slots=True)
class BinaryMessage(Message):
    """A message whose frame body is bytes, not JSON: ``to_bytes`` / :func:`parse_binary`."""

    CODE: ClassVar[int] = 0

    def to_wire(self) -> dict[str, Any]:
        raise DecodeError(f"{self.T} is a binary message: it has no JSON form", reason="binary")

    def to_bytes(self) -> bytes:
        """The whole frame body: 0x00, the type byte, the fields."""
        return bytes((BINARY_TAG, self.CODE)) + self.fields()

    def fields(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_fields(cls, data: bytes) -> BinaryMessage:
        """Parse the bytes after the two tag bytes; DecodeError on anything but the exact format."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RSync(BinaryMessage):
    """Opens a v2 round: the initiator's accepted-event count and its coded symbol 0."""

    T: ClassVar[str] = "rsync"
    CODE: ClassVar[int] = 0x01
    size: int          # u32
    batch: SymbolBatch   # starting at 0, one symbol

    def __post_init__(self) -> None:
        if not 0 <= self.size < 1 << 32:
            raise _bad(self.T, "size", "must be a u32")
        if self.batch.start != 0 or len(self.batch.symbols) != 1:
            raise _bad(self.T, "batch", "must be symbol 0 alone")

    def fields(self) -> bytes:
        return self.size.to_bytes(4, "big") + self.batch.to_bytes()

    @classmethod
    def from_fields(cls, data: bytes) -> RSync:
        if len(data) < 4:
            raise _bad(cls.T, "size", "is missing")
        return cls(size=int.from_bytes(data[:4], "big"), batch=SymbolBatch.from_bytes(data[4:]))


@dataclass(frozen=True, slots=True)
class RMore(BinaryMessage):
    """Responder -> initiator: send the next ``n`` symbols."""

    T: ClassVar[str] = "rmore"
    CODE: ClassVar[int] = 0x02
    n: int             # u16, 1..MAX_BATCH_SYMBOLS

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_BATCH_SYMBOLS:
            raise _bad(self.T, "n", f"must be 1..{MAX_BATCH_SYMBOLS}")

    def fields(self) -> bytes:
        return self.n.to_bytes(2, "big")

    @classmethod
    def from_fields(cls, data: bytes) -> RMore:
        if len(data) != 2:
            raise _bad(cls.T, "n", "must be exactly 2 bytes")
        return cls(n=_u16(data, 0))


@dataclass(frozen=True, slots=True)
class RSym(BinaryMessage):
    """Initiator -> responder: a batch starting where the previous one stopped."""

    T: ClassVar[str] = "rsym"
    CODE: ClassVar[int] = 0x03
    batch: SymbolBatch   # a ReconcileError (a DecodeError) when malformed

    def fields(self) -> bytes:
        return self.batch.to_bytes()

    @classmethod
    def from_fields(cls, data: bytes) -> RSym:
        return cls(batch=SymbolBatch.from_bytes(data))


@dataclass(frozen=True, slots=True)
class RWant(BinaryMessage):
    """Responder -> initiator: decoded; send me the events whose ids start with these 8 bytes."""

    T: ClassVar[str] = "rwant"
    CODE: ClassVar[int] = 0x04
    prefixes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.prefixes) > MAX_WANT_PREFIXES:
            raise _bad(self.T, "k", f"must be 0..{MAX_WANT_PREFIXES}")
        if not all(isinstance(p, bytes) and len(p) == WANT_PREFIX_BYTES for p in self.prefixes):
            raise _bad(self.T, "prefixes", f"must be {WANT_PREFIX_BYTES} bytes each")

    def fields(self) -> bytes:
        return len(self.prefixes).to_bytes(2, "big") + b"".join(self.prefixes)

    @classmethod
    def from_fields(cls, data: bytes) -> RWant:
        if len(data) < 2:
            raise _bad(cls.T, "k", "is missing")
        k = _u16(data, 0)
        if k > MAX_WANT_PREFIXES or len(data) != 2 + WANT_PREFIX_BYTES * k:
            raise _bad(cls.T, "prefixes", f"must be k (0..{MAX_WANT_PREFIXES}) prefixes of {WANT_PREFIX_BYTES} bytes")
        return cls(prefixes=tuple(data[at:at + WANT_PREFIX_BYTES] for at in range(2, len(data), WANT_PREFIX_BYTES)))

    def hex_prefixes(self) -> list[str]:
        return [p.hex() for p in self.prefixes]


@dataclass(frozen=True, slots=True)
class RFail(BinaryMessage):
    """Responder -> initiator: not decoded within the limit; fall back (no fields)."""

    T: ClassVar[str] = "rfail"
    CODE: ClassVar[int] = 0x05

    def fields(self) -> bytes:
        return b""

    @classmethod
    def from_fields(cls, data: bytes) -> RFail:
        if data:
            raise _bad(cls.T, "body", "must be empty")
        return cls()


BINARY_TYPES: dict[int, type[BinaryMessage]] = {c.CODE: c for c in (RSync, RMore, RSym, RWant, RFail)}


def binary_type_name(body: bytes) -> str:
    """The type name of a binary body, for traffic counters ("?" when unknown)."""
    cls = BINARY_TYPES.get(body[1]) if len(body) >= 2 else None
    return cls.T if cls is not None else "?"


def parse_binary(body: bytes) -> BinaryMessage:
    """A binary frame body (0x00, type, fields) as its message; DecodeError on anything else."""
    if len(body) < 2 or body[0] != BINARY_TAG:
        raise DecodeError("a binary frame body starts with 0x00 and a type byte", reason="bad_binary")
    cls = BINARY_TYPES.get(body[1])
    if cls is None:
        raise DecodeError(f"unknown binary message type 0x{body[1]:02x}", reason="unknown_type")
    return cls.from_fields(body[2:])
