"""The replicated auction state machine (pure, in memory, deterministic).

Validity of an event is a function of the event and its causal past only (SPEC §2). The ledger
keeps, per accepted event, a compact slotted record — never the Event or its bytes (the store has
those) — with what validating a dependant needs: the best bid in the causal past (the bid itself
for a bid), whether a close is in the causal past, the lamport, and the deps as record references
(for the one-off causal closure of a close). Per auction it keeps aggregates: leading bid, heads,
closes, and the bids in the closes' causal past (so late bids are known).

Events whose deps are unknown wait in a bounded pending buffer (count and byte caps, oldest
evicted first). The byte cap bounds the buffer's real memory: each entry is charged an estimate of
what it holds in memory (the decoded event, its dep strings, its waiting-index entries; see
``pending_cost``), not only its wire size. Pending events that leave the buffer unresolved
(evicted, expired by ``sweep_pending``, or rejected because a dep turned out invalid) are reported with the ``origin`` the caller
gave (the peer that sent them) through ``take_unresolved()``, so the caller can penalise it.

Because every rule only reads the causal past, the same set of events gives the same state, digest
and views whatever the arrival order or duplication.

Atomic changes: between ``begin()`` and ``commit()`` every change to the accepted state and to the
pending buffer is journaled; ``rollback()`` undoes them all, so a caller whose store failed to
commit can return the ledger to exactly what it was (the Replica does this: memory changes only
with a successful store commit). A pending event dropped and parked again by a rollback becomes
the newest entry (only the eviction order differs).
"""

from __future__ import annotations

import bisect
import functools
import sys
from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any, Callable, Iterable, Iterator, Protocol

from p2pauction.jsontypes import JSONObject
from p2pauction.errors import DecodeError, NotFound
from p2pauction.state.events import (MAX_EVENT_BYTES, BidBody, CloseBody, Event, Kind, OpenBody,
                                     decode_event, decode_stored, event_id_of, unsigned_from_raw)
from p2pauction.state.identity import SignatureVerifier
from p2pauction.state.idindex import IdIndex
from p2pauction.state.money import MAX_AMOUNT, format_money
from p2pauction.state.validation import CONTENT_REASONS, RejectReason

_MOD = 1 << 256
TICK = Decimal("0.00000001")   # the smallest step the money grammar allows
_VIEW_CACHE = 64             # auction views kept until their auction changes
MAX_CANDIDATES = 10        # auctions an ambiguous-prefix error lists
CANDIDATE_ITEM_CHARS = 24  # of each one's item (peer text: the CLI escapes it when shown)
_REJECTED_MEMORY = 65_536   # content-rejected ids remembered (cheap repeats, dependants fail fast)
_UNRESOLVED_MEMORY = 4096   # unresolved pending events kept for take_unresolved() (oldest dropped)
# Real memory of one pending entry beyond its wire bytes (CPython 3.11, measured with tracemalloc:
# 1,370 bytes for a 450-byte bid with one missing dep, 11,985 for a 2,527-byte bid with 32): the
# decoded Event, its body and fields; each dep id as a str in the event's deps tuple; each missing
# dep in the waiting index (a dict entry and a one-entry dict). The estimate errs a little high, so
# the byte cap bounds the real memory (tests/test_state_pending_memory.py checks it).
PENDING_ENTRY_OVERHEAD = 700
PENDING_PER_DEP = 125
PENDING_PER_MISSING = 160


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    DISPUTED = "disputed"


class OutcomeKind(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    PENDING = "pending"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    event_id: str | None                    # None when the bytes did not even decode
    accepted: tuple[Event, ...] = ()        # this event and the pending ones it released, in order
    reason: RejectReason | None = None      # set when REJECTED


@dataclass(slots=True)
class LedgerCounters:
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)   # reason -> count, insertion ordered
    pending: int = 0            # events waiting for deps now
    pending_bytes: int = 0      # estimated memory of the pending buffer (see pending_cost)
    evicted: int = 0            # pending events dropped by the caps
    expired: int = 0            # pending events dropped by sweep_pending (never resolved)
    released: int = 0           # pending events later accepted
    rollbacks: int = 0          # atomic changes undone (their store commit failed)

    def to_json(self) -> JSONObject:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": sum(self.rejected.values()), "rejected_by_reason": dict(self.rejected),
                "pending": self.pending, "pending_bytes": self.pending_bytes,
                "evicted": self.evicted, "expired": self.expired, "released": self.released,
                "rollbacks": self.rollbacks}

    def copy(self) -> LedgerCounters:
        return LedgerCounters(self.accepted, self.duplicates, dict(self.rejected), self.pending,
                              self.pending_bytes, self.evicted, self.expired, self.released, self.rollbacks)


@dataclass(frozen=True, slots=True)
class BidView:
    id: str
    bidder: str
    name: str | None
    amount: Decimal
    lamport: int
    ts: int
    late: bool

    def to_json(self) -> JSONObject:
        return {"id": self.id, "bidder": self.bidder, "name": self.name,
                "amount": format_money(self.amount), "lamport": self.lamport, "ts": self.ts,
                "late": self.late}


class _LazyBids:
    """The bid list of one view, built on first use from a snapshot (the auction's append-only
    record list cut at the view's length, and the close past at that time), then kept."""

    __slots__ = ("_build", "_bids")

    def __init__(self, build: Callable[[], tuple[BidView, ...]]) -> None:
        self._build: Callable[[], tuple[BidView, ...]] | None = build
        self._bids: tuple[BidView, ...] | None = None

    def get(self) -> tuple[BidView, ...]:
        if self._bids is None:
            assert self._build is not None
            self._bids = self._build()
            self._build = None      # drop the snapshot's references once built
        return self._bids


@dataclass(frozen=True, slots=True, eq=False)
class AuctionView:
    """An auction as it stands after some event: immutable.

    The summary fields cost O(1) to build whatever the auction's size (the ledger keeps them up
    to date as events are applied); ``bids`` is built only when first asked for (O(n log n)),
    then kept with the view. Views compare equal when their JSON forms are equal.
    """

    id: str
    seller: str
    seller_name: str | None
    item: str
    currency: str
    start_price: Decimal
    min_increment: Decimal
    ends_at: int | None
    opened_ts: int
    status: Status
    bid_count: int
    leading: BidView | None          # OPEN/DISPUTED: best of all bids; CLOSED: the winner
    closes: tuple[str, ...]          # close event ids, sorted (two or more: DISPUTED, the proof)
    winner: BidView | None           # CLOSED only
    price: Decimal | None            # CLOSED with a winner
    closed_ts: int | None            # ts of the (earliest) close
    _close_past: frozenset[str] | None = field(default=None, repr=False)
    _bids: _LazyBids = field(default_factory=lambda: _LazyBids(tuple), repr=False)

    @property
    def bids(self) -> tuple[BidView, ...]:
        """Every bid, in (lamport, id) order — a causal order, the same on every node."""
        return self._bids.get()

    @property
    def late_bids(self) -> tuple[BidView, ...]:
        return tuple(b for b in self.bids if b.late)

    def is_late(self, bid_id: str) -> bool:
        """Whether a bid of this auction is late (not in the causal past of any close), in O(1)."""
        return self._close_past is not None and bid_id not in self._close_past

    @property
    def min_next_bid(self) -> Decimal:
        """The lowest amount a bid that has seen every known bid may offer: the start price,
        else the leading amount plus the increment (or plus one tick, 0.00000001, without one).
        It may exceed MAX_AMOUNT: then no legal bid can beat the leading one."""
        if self.leading is None:
            return self.start_price
        return self.leading.amount + (self.min_increment if self.min_increment > 0 else TICK)

    @property
    def can_be_outbid(self) -> bool:
        """OPEN, and some legal amount is at least :attr:`min_next_bid`."""
        return self.status is Status.OPEN and self.min_next_bid <= MAX_AMOUNT

    def summary_json(self) -> JSONObject:
        """Everything but the bid list (O(1)): what notifications carry."""
        return {
            "id": self.id, "seller": self.seller, "seller_name": self.seller_name, "item": self.item,
            "currency": self.currency, "start_price": format_money(self.start_price),
            "min_increment": format_money(self.min_increment), "ends_at": self.ends_at,
            "opened_ts": self.opened_ts, "status": self.status.value, "bid_count": self.bid_count,
            "leading": self.leading.to_json() if self.leading else None,
            "closes": list(self.closes),
            "winner": self.winner.to_json() if self.winner else None,
            "price": format_money(self.price) if self.price is not None else None,
            "closed_ts": self.closed_ts,
            # null unless OPEN and a legal bid can still beat the leading one
            "min_next_bid": format_money(self.min_next_bid) if self.can_be_outbid else None,
        }

    def to_json(self) -> JSONObject:
        return {**self.summary_json(), "bids": [b.to_json() for b in self.bids]}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuctionView):
            return NotImplemented
        return self is other or self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]


def _cut(text: str, limit: int = CANDIDATE_ITEM_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class _Rec:
    """What the ledger keeps of one accepted event."""

    __slots__ = ("id", "kind", "auction", "author", "lamport", "ts", "deps", "best", "closed",
                 "amount", "name")

    def __init__(self, id: str, kind: Kind, auction: str, author: str, lamport: int, ts: int,
                 deps: tuple[_Rec, ...], best: _Rec | None, closed: bool,
                 amount: Decimal | None, name: str | None) -> None:
        self.id = id
        self.kind = kind
        self.auction = auction          # shared string object (the open's id)
        self.author = author            # interned
        self.lamport = lamport
        self.ts = ts
        self.deps = deps
        self.best = best                # best bid in the causal past, including itself
        self.closed = closed            # a close is in the causal past, including itself
        self.amount = amount            # bids only
        self.name = name                # bids only (interned)


def _better(a: _Rec, b: _Rec | None) -> bool:
    """Bid order: amount higher, then lamport lower, then id lower."""
    if b is None:
        return True
    assert a.amount is not None and b.amount is not None
    if a.amount != b.amount:
        return a.amount > b.amount
    if a.lamport != b.lamport:
        return a.lamport < b.lamport
    return a.id < b.id


class _Auction:
    __slots__ = ("rec", "seller", "seller_name", "item", "currency", "start_price", "min_increment",
                 "ends_at", "bids", "leading", "closes", "in_close_past", "heads")

    def __init__(self, rec: _Rec, body: OpenBody) -> None:
        self.rec = rec
        self.seller = rec.author
        self.seller_name = body.name
        self.item = body.item
        self.currency = sys.intern(body.currency)
        self.start_price = body.start_price
        self.min_increment = body.min_increment
        self.ends_at = body.ends_at
        self.bids: list[_Rec] = []
        self.leading: _Rec | None = None
        self.closes: list[_Rec] = []
        # ids of bids in some close's causal past; replaced (never mutated) at each close, so a
        # view can keep the one of its time
        self.in_close_past: frozenset[str] | None = None
        self.heads: dict[str, None] = {rec.id: None}

    @property
    def status(self) -> Status:
        if not self.closes:
            return Status.OPEN
        return Status.CLOSED if len(self.closes) == 1 else Status.DISPUTED


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A pending event that left the buffer without being accepted."""

    event_id: str
    origin: str | None        # what the caller passed with the event (the peer that sent it)
    reason: str               # "evicted" (the caps), "expired" (sweep_pending), "invalid_dep"


class Archive(IdIndex, Protocol):
    """The committed history behind a ledger that keeps only a working set (the store); it also
    answers the gossip core's anti-entropy summary (``IdIndex``), so no layer holds every id.

    Every event it holds was accepted by a ledger and committed with the derived state of its
    commit (auction statuses, name claims), so the ledger may drop an auction's records and read
    them back, and need not hold what it can look up."""

    def auction_of(self, event_id: str) -> str | None:
        """The auction of a stored event; None when the event is not stored."""
    def auction_events(self, auction_id: str) -> Iterator[tuple[str, bytes]]:
        """The auction's stored events (id, bytes) in commit order (a causal order)."""
    def auction_ids(self, status: str | None = None, prefix: str = "") -> list[str]:
        """Sorted ids of the stored auctions (with that saved status, starting with ``prefix``)."""
    def status_counts(self) -> dict[str, int]:
        """Saved status -> number of auctions."""
    def claim_of(self, author: str) -> tuple[int, str, str] | None:
        """(lamport, event id, name) of the author's latest stored event that claims a name."""
    def ids_in_order(self) -> Iterator[str]:
        """Every stored id in commit order."""


@dataclass(frozen=True, slots=True)
class WorkingSet:
    """What the ledger holds in memory of the auctions (see Ledger.attach)."""

    auctions: int        # in memory
    evictable: int       # of which finished ones, in the bounded cache
    capacity: int        # the cache's bound
    loads: int           # auctions read back from the archive
    evictions: int
    unrestorable: int    # stored events that could not be read back (a store that lost events)

    def to_json(self) -> JSONObject:
        return {"auctions": self.auctions, "evictable": self.evictable, "capacity": self.capacity,
                "loads": self.loads, "evictions": self.evictions, "unrestorable": self.unrestorable}


def pending_cost(event: Event, missing: int) -> int:
    """What a pending entry is charged against the byte cap: its estimated real memory."""
    return (len(event.raw) + PENDING_ENTRY_OVERHEAD + PENDING_PER_DEP * len(event.deps)
            + PENDING_PER_MISSING * missing)


class _Pending:
    __slots__ = ("event", "missing", "origin", "cost", "born")

    def __init__(self, event: Event, missing: list[str], origin: str | None, born: int) -> None:
        self.event = event
        self.missing = missing
        self.origin = origin
        self.cost = pending_cost(event, len(missing))
        self.born = born              # the sweep count when it was parked (see sweep_pending)


class Ledger:
    """Applies events; all state is a function of the set of accepted events."""

    def __init__(self, net: str, *, verifier: SignatureVerifier | None = None,
                 pending_max_count: int = 10_000, pending_max_bytes: int = 16 * 2**20,
                 pending_max_sweeps: int = 10) -> None:
        self.net = net
        self.verifier = verifier if verifier is not None else SignatureVerifier()
        self.pending_max_count = pending_max_count
        self.pending_max_bytes = pending_max_bytes
        self.pending_max_sweeps = pending_max_sweeps
        self._sweeps = 0
        self.digest = 0
        self.counters = LedgerCounters()
        self._recs: dict[str, _Rec] = {}
        self._auctions: dict[str, _Auction] = {}
        self._auction_ids: list[str] = []            # sorted, for prefix lookups
        self._pending: dict[str, _Pending] = {}      # insertion order = age (oldest first)
        self._waiting: dict[str, dict[str, None]] = {}  # missing dep id -> pending ids
        self._rejected: OrderedDict[str, RejectReason] = OrderedDict()
        self._views: OrderedDict[str, AuctionView] = OrderedDict()
        # author key -> (lamport, event id, name) of its latest event that claims a name: what
        # `peers` shows beside a key (one entry per named author, bounded by the events held)
        self._claims: dict[str, tuple[int, str, str]] = {}
        self._unresolved: deque[Unresolved] = deque(maxlen=_UNRESOLVED_MEMORY)
        self._undo: list[Callable[[], object]] | None = None   # journal of the open atomic change
        self._saved: tuple[int, LedgerCounters, int] | None = None
        # The working set (see attach): without an archive every auction stays in memory.
        self._archive: Archive | None = None
        self._cache_max = 0
        self._evictable: OrderedDict[str, None] = OrderedDict()   # finished auctions held, LRU first
        self._changed: dict[str, None] = {}          # auctions the open atomic change touched
        self._status_counts: dict[str, int] = {s.value: 0 for s in Status}
        self._loads = 0
        self._evictions = 0
        self._unrestorable = 0   # stored events that could not be read back (see _restore)

    # ---------------------------------------------------------------- atomic changes

    def begin(self) -> None:
        """Start journaling every change, to be kept by commit() or undone by rollback()."""
        if self._undo is not None:
            raise RuntimeError("Ledger.begin(): an atomic change is already open")
        self._undo = []
        self._saved = (self.digest, self.counters.copy(), len(self._unresolved))

    def commit(self) -> None:
        """Keep every change made since begin() (with an archive: which now holds them)."""
        self._undo = None
        self._saved = None
        self._settle()

    def rollback(self) -> None:
        """Undo every change made since begin(): accepted events, pending buffer, digest, counters."""
        undo, saved = self._undo, self._saved
        if undo is None or saved is None:
            raise RuntimeError("Ledger.rollback() without begin()")
        self._undo = None
        self._saved = None
        for step in reversed(undo):
            step()
        self.digest, counters, unresolved = saved
        for f in fields(LedgerCounters):  # in place: callers may hold the counters object
            setattr(self.counters, f.name, getattr(counters, f.name))
        self.counters.rollbacks += 1
        while len(self._unresolved) > unresolved:
            self._unresolved.pop()
        self._views.clear()
        self._settle()

    def _journal(self, step: Callable[[], object]) -> None:
        if self._undo is not None:
            self._undo.append(step)

    def take_unresolved(self) -> list[Unresolved]:
        """Pending events that left the buffer unresolved since the last call (at most 4096)."""
        out = list(self._unresolved)
        self._unresolved.clear()
        return out

    # ---------------------------------------------------------------- working set

    def attach(self, archive: Archive, cache_auctions: int, *, restored: tuple[int, int] | None = None) -> None:
        """Keep only a working set in memory from now on: open auctions, and at most
        ``cache_auctions`` finished ones (least recently used evicted first); the rest is read back
        from ``archive`` when an event of it arrives or a view asks for it. With ``restored``
        (digest, accepted count, as saved with the archive's last commit) the ledger starts from
        the archive instead of its own (empty) memory: a restart without replay.

        From then on every change must be made between begin() and commit(), commit() only once
        the archive holds it: eviction happens at commit()."""
        self._archive = archive
        self._cache_max = cache_auctions
        self._auction_ids = []                 # prefix lookups ask the archive
        if restored is not None:
            self.digest, self.counters.accepted = restored
            self._status_counts = {s.value: 0 for s in Status} | archive.status_counts()
        else:
            self._evictable = OrderedDict((aid, None) for aid, a in self._auctions.items()
                                          if a.status is not Status.OPEN)
            self._trim(self._cache_max)

    def working_set(self) -> WorkingSet:
        return WorkingSet(len(self._auctions), len(self._evictable), self._cache_max, self._loads,
                          self._evictions, self._unrestorable)

    def _stored(self, event_id: str) -> bool:
        return self._archive is not None and self._archive.auction_of(event_id) is not None

    def _ensure(self, auction_id: str) -> None:
        """Bring an evicted auction back into memory (its stored events, applied again without
        their signatures: this node verified them before storing them); a hot one moves to the
        end of the eviction order."""
        if auction_id in self._auctions:
            if auction_id in self._evictable:
                self._evictable.move_to_end(auction_id)
            return
        if self._archive is None:
            return
        stored = list(self._archive.auction_events(auction_id))
        if not stored:
            return
        if self._undo is None:
            self._trim(self._cache_max)
        self._restore(stored)
        self._loads += 1
        a = self._auctions.get(auction_id)
        if a is not None and a.status is not Status.OPEN:
            self._evictable[auction_id] = None

    def _trim(self, keep: int) -> None:
        """Evict the least recently used finished auctions beyond ``keep`` (never inside an open
        atomic change: what it changed is not in the archive yet)."""
        while len(self._evictable) > keep:
            aid, _ = self._evictable.popitem(last=False)
            a = self._auctions.get(aid)
            if a is not None and a.status is not Status.OPEN:   # (a rollback may have reopened it)
                self._evict(a)

    def _evict(self, a: _Auction) -> None:
        for r in (a.rec, *a.bids, *a.closes):
            del self._recs[r.id]
        del self._auctions[a.rec.id]
        self._views.pop(a.rec.id, None)
        self._evictions += 1

    def _settle(self) -> None:
        """After an atomic change: the finished auctions it touched join the cache, then trim."""
        if self._archive is None:
            self._changed = {}
            return
        for aid in self._changed:
            a = self._auctions.get(aid)
            if a is not None and a.status is not Status.OPEN:
                self._evictable[aid] = None
                self._evictable.move_to_end(aid)
        self._changed = {}
        self._claims = {}     # the archive holds them now (saved with the commit)
        self._trim(self._cache_max)

    def _peek(self, auction_id: str) -> _Auction | None:
        """The auction, from memory, else rebuilt apart from the working set (no eviction churn
        when a caller walks many auctions)."""
        a = self._auctions.get(auction_id)
        if a is not None or self._archive is None:
            return a
        scratch = Ledger(self.net, verifier=self.verifier)
        self._unrestorable += scratch._restore(self._archive.auction_events(auction_id))
        return scratch._auctions.get(auction_id)

    def _restore(self, stored: Iterable[tuple[str, bytes]]) -> int:
        """Apply an auction's stored events again; returns how many could not be (a dep or the
        open missing: a store that lost events, which the correct Replica never leaves behind;
        they are skipped, as a replay would leave them pending)."""
        skipped = 0
        for event_id, raw in stored:
            e = decode_stored(raw, event_id)
            if (e.kind is not Kind.OPEN and e.auction_id not in self._auctions) or any(
                    d not in self._recs for d in e.deps):
                skipped += 1
                continue
            self._apply(e, restoring=True)
        self._unrestorable += skipped
        return skipped

    # ---------------------------------------------------------------- queries

    @property
    def digest_hex(self) -> str:
        return f"{self.digest:064x}"

    def __len__(self) -> int:
        return self.counters.accepted if self._archive is not None else len(self._recs)

    def has(self, event_id: str) -> bool:
        return event_id in self._recs or self._stored(event_id)

    def is_pending(self, event_id: str) -> bool:
        return event_id in self._pending

    def id_index(self) -> IdIndex | None:
        """The store's index of accepted ids when this ledger keeps only a working set (then the
        gossip core reads its anti-entropy summary there); None when every id is in memory."""
        return self._archive

    def ids_in_order(self) -> Iterator[str]:
        """Accepted ids in accept order (a causal order)."""
        if self._archive is not None:
            return self._archive.ids_in_order()
        return iter(list(self._recs))

    def lamport_of(self, event_id: str) -> int:
        rec = self._recs.get(event_id)
        if rec is None and self._archive is not None:
            auction = self._archive.auction_of(event_id)
            if auction is not None:
                self._ensure(auction)
                rec = self._recs.get(event_id)
        if rec is None:
            raise NotFound(f"unknown event {event_id}")
        return rec.lamport

    def next_lamport(self, deps: tuple[str, ...]) -> int:
        """The lamport an event with these (accepted) deps must carry: 1 + max, or 1 with none."""
        return 1 + max((self.lamport_of(d) for d in deps), default=0)

    def heads(self, auction_id: str) -> tuple[str, ...]:
        return tuple(sorted(self._get(auction_id).heads))

    def auction(self, auction_id: str) -> AuctionView:
        return self._cached_view(self._get(auction_id))

    def auctions(self, status: Status | None = None) -> list[AuctionView]:
        """Views sorted by (opened_ts, id) (with an archive, those not in memory are rebuilt
        apart from the working set: time O(their events))."""
        chosen = [a for a in self._auctions.values() if status is None or a.status == status]
        if self._archive is not None:
            # open auctions belong in the working set: load them; the others (finished, unchanged
            # since their save: their saved status holds) are rebuilt apart
            opened = set(self._archive.auction_ids(Status.OPEN.value)) if status is not Status.OPEN else None
            for aid in self._archive.auction_ids(status.value if status else None):
                if aid not in self._auctions:
                    if opened is None or aid in opened:
                        self._ensure(aid)
                    a = self._auctions.get(aid) or self._peek(aid)
                    if a is not None:
                        chosen.append(a)
        chosen.sort(key=lambda a: (a.rec.ts, a.rec.id))
        return [self._cached_view(a) if a.rec.id in self._auctions else _view(a) for a in chosen]

    def status_counts(self) -> dict[str, int]:
        """{"open": n, "closed": n, "disputed": n} without building views (cheap for status)."""
        if self._archive is not None:
            return dict(self._status_counts)
        counts = {s.value: 0 for s in Status}
        for a in self._auctions.values():
            counts[a.status.value] += 1
        return counts

    def auction_ids(self) -> list[str]:
        if self._archive is not None:
            return sorted(set(self._archive.auction_ids()).union(self._auctions))
        return list(self._auction_ids)

    def resolve_prefix(self, prefix: str) -> str:
        """The unique auction id starting with ``prefix`` (like git); NotFound if none or several.

        When several match, the message lists them like git (id prefix and item, at most
        MAX_CANDIDATES, then how many more) so that the user can pick one.
        """
        p = prefix.strip().lower()
        if not p:
            raise NotFound("empty auction id")
        if self._archive is not None:
            matches = sorted(set(self._archive.auction_ids(None, p)).union(
                aid for aid in self._auctions if aid.startswith(p)))
        else:
            i = bisect.bisect_left(self._auction_ids, p)
            j = bisect.bisect_left(self._auction_ids, p + "\U0010ffff", i)   # ids are hex: past every match
            matches = self._auction_ids[i:j]
        if not matches:
            raise NotFound(f"unknown auction {prefix!r}")
        if len(matches) > 1:
            shown = ", ".join(f"{aid[:12]}... {_cut(self._item(aid))}" for aid in matches[:MAX_CANDIDATES])
            more = f", and {len(matches) - MAX_CANDIDATES} more" if len(matches) > MAX_CANDIDATES else ""
            raise NotFound(f"ambiguous prefix {p}: {shown}{more} (give more characters)")
        return matches[0]

    def _item(self, auction_id: str) -> str:
        a = self._peek(auction_id)
        return a.item if a is not None else ""

    def claimed_name(self, key: str) -> str | None:
        """The name ``key`` claimed in its latest (lamport, id) event held here that has one."""
        claim = self.claim_of(key)
        return claim[2] if claim else None

    def claimants(self) -> list[str]:
        """The authors whose claims are held in memory (every one, without an archive)."""
        return list(self._claims)

    def claim_of(self, key: str) -> tuple[int, str, str] | None:
        """(lamport, event id, name) of ``key``'s latest event that claims a name."""
        claim = self._claims.get(key)
        if claim is None and self._archive is not None:
            claim = self._archive.claim_of(key)
        return claim

    def _claim(self, author: str, lamport: int, event_id: str, name: str) -> None:
        held = self.claim_of(author)
        if held is None or (lamport, event_id) > held[:2]:
            self._claims[author] = (lamport, event_id, name)
            self._journal(lambda: self._unclaim(author, held))

    def _unclaim(self, author: str, held: tuple[int, str, str] | None) -> None:
        if held is None:
            self._claims.pop(author, None)
        else:
            self._claims[author] = held

    def leading_head(self, auction_id: str) -> str | None:
        """A head whose causal past (itself included) holds the leading bid (used by Author.close)."""
        a = self._get(auction_id)
        if a.leading is None:
            return None
        for hid in sorted(a.heads):
            if self._recs[hid].best is a.leading:
                return hid
        return None  # pragma: no cover - every accepted bid is in some head's past

    def head_lamports(self, auction_id: str) -> list[tuple[int, str]]:
        a = self._get(auction_id)
        return [(self._recs[h].lamport, h) for h in a.heads]

    def status_of(self, auction_id: str) -> Status:
        """An auction's status without building its view."""
        return self._get(auction_id).status

    def _get(self, auction_id: str) -> _Auction:
        self._ensure(auction_id)
        a = self._auctions.get(auction_id)
        if a is None:
            raise NotFound(f"unknown auction {auction_id!r}")
        return a

    def _cached_view(self, a: _Auction) -> AuctionView:
        """Views are immutable: keep the last few until their auction changes (a node asks for
        the same view several times per event: feeds, notifications, records)."""
        aid = a.rec.id
        view = self._views.get(aid)
        if view is None:
            view = self._views[aid] = _view(a)
            if len(self._views) > _VIEW_CACHE:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(aid)
        return view

    # ---------------------------------------------------------------- input

    def receive_raw(self, raw: bytes, *, origin: str | None = None) -> Outcome:
        """Decode + verify + validate + apply one event from the wire; ``origin`` (the sender) is
        reported back if the event waits as pending and leaves the buffer unresolved."""
        eid = _quick_id(raw)
        if eid is not None and (eid in self._recs or eid in self._pending or self._stored(eid)):
            # gossip delivers many copies: spot known events before paying for a full decode
            self.counters.duplicates += 1
            return Outcome(OutcomeKind.DUPLICATE, eid)
        try:
            event = decode_event(raw)
        except DecodeError as exc:
            return self._reject_undecodable(RejectReason(exc.reason))
        # (a decoded event is canonical: its id is the quick one, already looked up)
        return self._receive(event, verified=False, origin=origin, unseen=event.id == eid)

    def receive(self, event: Event, *, verified: bool = False, origin: str | None = None) -> Outcome:
        """Verify + validate + apply one decoded event; ``verified`` skips the signature check
        (only for bytes this node itself stored after verifying them); ``origin`` as in
        receive_raw."""
        return self._receive(event, verified=verified, origin=origin, unseen=False)

    def _receive(self, event: Event, *, verified: bool, origin: str | None, unseen: bool) -> Outcome:
        eid = event.id
        if not unseen and (eid in self._recs or eid in self._pending or self._stored(eid)):
            self.counters.duplicates += 1
            return Outcome(OutcomeKind.DUPLICATE, eid)
        known = self._rejected.get(eid)
        if known is not None:
            self._count_reject(known)
            return Outcome(OutcomeKind.REJECTED, eid, (), known)
        if event.net != self.net:
            return self._reject(eid, RejectReason.WRONG_NET, remember=False)
        if not verified and not self.verifier.verify(event.author, event.sig, event.signing_bytes):
            return self._reject(eid, RejectReason.BAD_SIGNATURE, remember=False)
        self._ensure(event.auction_id)
        missing = [d for d in event.deps if d not in self._recs]
        stored = [d for d in missing if self._stored(d)] if self._archive is not None else []
        foreign = bool(stored)   # stored, not in memory although its auction would be: another auction's
        if foreign:
            missing = [d for d in missing if d not in stored]
        if missing:
            reason = self._check_known(event, missing, foreign)
            if reason is None:
                self._park(event, missing, origin)
                return Outcome(OutcomeKind.PENDING, eid)
        else:
            reason = RejectReason.CROSS_AUCTION_DEP if foreign else self._check(event)
        if reason is not None:
            self._reject(eid, reason)
            self._cascade(eid)      # events already waiting on this one can never be valid
            return Outcome(OutcomeKind.REJECTED, eid, (), reason)
        self._apply(event)
        accepted = [event]
        self._release(eid, accepted)
        return Outcome(OutcomeKind.ACCEPTED, eid, tuple(accepted))

    def load_trusted_raw(self, raw: bytes) -> Outcome:
        """Rebuild from this node's own store: decode and validate, skip the signature."""
        try:
            event = decode_event(raw)
        except DecodeError as exc:
            return self._reject_undecodable(RejectReason(exc.reason))
        return self.receive(event, verified=True)

    # ---------------------------------------------------------------- rules

    def _check_known(self, e: Event, missing: list[str], foreign: bool = False) -> RejectReason | None:
        """Verdicts already certain while some deps are unknown (else the event waits);
        ``foreign``: some dep is stored in another auction."""
        if any(d in self._rejected for d in missing):
            return RejectReason.INVALID_DEP
        aid = e.auction_id
        if foreign or any(self._recs[d].auction != aid for d in e.deps if d in self._recs):
            return RejectReason.CROSS_AUCTION_DEP
        return None

    def _check(self, e: Event) -> RejectReason | None:
        """Every rule that needs the causal past; all deps are accepted here."""
        aid = e.auction_id
        recs = self._recs
        deps = [recs[d] for d in e.deps]
        # one pass over the deps: auction, lamport, closed(e) and best(e)
        top = 0
        closed = False
        best: _Rec | None = None
        for d in deps:
            if d.auction != aid:
                return RejectReason.CROSS_AUCTION_DEP
            if d.lamport > top:
                top = d.lamport
            closed = closed or d.closed
            b = d.best
            if b is not None and (best is None or _better(b, best)):
                best = b
        if e.lamport != top + 1:
            return RejectReason.BAD_LAMPORT
        body = e.body
        if isinstance(body, OpenBody):
            if body.ends_at is not None and body.ends_at <= e.ts:
                return RejectReason.ENDS_BEFORE_OPEN
            return None
        a = self._auctions[aid]   # deps are of this auction, so the open is accepted
        if isinstance(body, BidBody):
            if e.author == a.seller:
                return RejectReason.SELLER_BID
            if closed:
                return RejectReason.AUCTION_CLOSED
            if a.ends_at is not None and e.ts > a.ends_at:
                return RejectReason.AFTER_END
            if body.amount < a.start_price:
                return RejectReason.BELOW_START
            if best is not None:
                assert best.amount is not None
                if body.amount <= best.amount:
                    return RejectReason.NOT_ABOVE_BEST
                if body.amount < best.amount + a.min_increment:
                    return RejectReason.BELOW_INCREMENT
            return None
        assert isinstance(body, CloseBody)
        if e.author != a.seller:
            return RejectReason.NOT_SELLER
        if closed:
            return RejectReason.AUCTION_CLOSED
        if body.winner != (best.id if best is not None else None):
            return RejectReason.WRONG_WINNER
        return None

    # ---------------------------------------------------------------- apply

    def _apply(self, e: Event, *, restoring: bool = False) -> None:
        """Apply an accepted event; ``restoring``: an evicted auction's event read back (not a
        change: no digest, counters, claims or journal)."""
        eid = e.id
        deps = tuple(map(self._recs.__getitem__, e.deps))
        body = e.body
        author = sys.intern(e.author)
        if not restoring and isinstance(body, OpenBody | BidBody) and body.name is not None:
            self._claim(author, e.lamport, eid, body.name)
        if isinstance(body, OpenBody):
            rec = _Rec(eid, e.kind, eid, author, e.lamport, e.ts, (), None, False, None, None)
            self._recs[eid] = rec
            self._auctions[eid] = _Auction(rec, body)
            if restoring:
                return
            if self._archive is None:
                bisect.insort(self._auction_ids, eid)
            self._count_status(None, Status.OPEN)
            self._journal(lambda: self._unapply_open(rec))
        else:
            a = self._auctions[body.auction]
            aid = a.rec.id
            if isinstance(body, BidBody):
                name = sys.intern(body.name) if body.name is not None else None
                rec = _Rec(eid, e.kind, aid, author, e.lamport, e.ts, deps, None, False, body.amount, name)
                rec.best = rec
                a.bids.append(rec)
                before: _Rec | frozenset[str] | None = a.leading
                if _better(rec, a.leading):
                    a.leading = rec
                # accepted after a close: not in its past, hence late
            else:
                rec = _Rec(eid, e.kind, aid, author, e.lamport, e.ts, deps, _best_of(deps), True,
                           None, None)
                status = a.status
                a.closes.append(rec)
                before = a.in_close_past
                self._mark_close_past(a, rec)
                if not restoring:
                    self._count_status(status, a.status)
            self._recs[eid] = rec
            was_heads = [d for d in e.deps if a.heads.pop(d, 0) is None]
            a.heads[eid] = None
            if restoring:
                return
            if self._undo is not None:
                self._undo.append(lambda: self._unapply(a, rec, before, was_heads))
        if self._archive is not None:
            self._changed[e.auction_id] = None
        self._views.pop(e.auction_id, None)
        self.digest = (self.digest + int(eid, 16)) % _MOD
        self.counters.accepted += 1

    def _count_status(self, before: Status | None, after: Status | None) -> None:
        """Keep the per-status auction counts (the archive's saved ones plus the changes)."""
        if before is not None:
            self._status_counts[before.value] -= 1
        if after is not None:
            self._status_counts[after.value] += 1

    def _unapply_open(self, rec: _Rec) -> None:
        del self._recs[rec.id]
        del self._auctions[rec.id]
        if self._archive is None:
            del self._auction_ids[bisect.bisect_left(self._auction_ids, rec.id)]
        self._count_status(Status.OPEN, None)

    def _unapply(self, a: _Auction, rec: _Rec, before: _Rec | frozenset[str] | None,
                 was_heads: list[str]) -> None:
        """Undo _apply of a bid or close (journal steps run newest first, so it is the last one)."""
        del self._recs[rec.id]
        if rec.kind is Kind.BID:
            a.bids.pop()
            a.leading = before if isinstance(before, _Rec) else None
        else:
            status = a.status
            a.closes.pop()
            a.in_close_past = before if isinstance(before, frozenset) else None
            self._count_status(status, a.status)
        del a.heads[rec.id]
        for d in was_heads:
            a.heads[d] = None

    def _mark_close_past(self, a: _Auction, close: _Rec) -> None:
        """Bids in the close's causal past (BFS once per close; no recursion)."""
        # a new set, so that a rollback can put the previous one back
        past = set(a.in_close_past) if a.in_close_past is not None else set()
        seen: set[str] = set()
        queue = deque(close.deps)
        while queue:
            r = queue.popleft()
            if r.id in seen:
                continue
            seen.add(r.id)
            if r.kind is Kind.BID:
                past.add(r.id)
            queue.extend(r.deps)
        a.in_close_past = frozenset(past)

    # ---------------------------------------------------------------- pending

    def sweep_pending(self) -> int:
        """Expire pending events that survived ``pending_max_sweeps`` calls (the caller makes
        them periodically: the ledger has no clock); they are reported as unresolved ("expired").
        Returns how many expired."""
        self._sweeps += 1
        expired = 0
        for pid in list(self._pending):
            p = self._pending[pid]
            if self._sweeps - p.born < self.pending_max_sweeps:
                break  # oldest first: the rest are younger
            self._drop_pending(pid)
            self._unresolved.append(Unresolved(pid, p.origin, "expired"))
            self.counters.expired += 1
            expired += 1
        return expired

    def _park(self, e: Event, missing: list[str], origin: str | None) -> None:
        self._insert_pending(_Pending(e, missing, origin, self._sweeps))
        while self._pending and (len(self._pending) > self.pending_max_count
                                 or self.counters.pending_bytes > self.pending_max_bytes):
            oldest = self._drop_pending(next(iter(self._pending)))
            self._unresolved.append(Unresolved(oldest.event.id, oldest.origin, "evicted"))
            self.counters.evicted += 1

    def _insert_pending(self, p: _Pending) -> None:
        pid = p.event.id
        self._pending[pid] = p
        for d in p.missing:
            self._waiting.setdefault(d, {})[pid] = None
        self.counters.pending_bytes += p.cost
        self.counters.pending = len(self._pending)
        self._journal(lambda: self._drop_pending(pid))

    def _drop_pending(self, pid: str) -> _Pending:
        p = self._pending.pop(pid)
        for d in p.missing:
            w = self._waiting.get(d)
            if w is not None:
                w.pop(pid, None)
                if not w:
                    del self._waiting[d]
        self.counters.pending_bytes -= p.cost
        self.counters.pending = len(self._pending)
        # undone by parking it again (as the newest entry: only the eviction order changes)
        self._journal(lambda: self._insert_pending(p))
        return p

    def _walk_waiters(self, first: str, visit: Callable[[str], bool]) -> None:
        """Breadth-first over the pending events waiting on ``first``, in sorted-id order per step;
        ``visit(pid)`` says whether the walk goes on to the events waiting on ``pid``."""
        queue = deque([first])
        while queue:
            dep = queue.popleft()
            waiters = self._waiting.pop(dep, None)
            if waiters:
                self._journal(functools.partial(self._rewait, dep, waiters))
                queue.extend(pid for pid in sorted(waiters) if visit(pid))

    def _rewait(self, dep: str, waiters: dict[str, None]) -> None:
        """Undo the pop of ``dep``'s waiters (those still pending wait on it again)."""
        for pid in waiters:
            p = self._pending.get(pid)
            if p is not None:
                if dep not in p.missing:
                    p.missing.append(dep)
                self._waiting.setdefault(dep, {})[pid] = None

    def _release(self, first: str, accepted: list[Event]) -> None:
        """Apply pending events unblocked by ``first``, iteratively."""

        def release(pid: str) -> bool:
            p = self._pending.get(pid)
            if p is None:
                return False
            still = [d for d in p.missing if d not in self._recs and not self._stored(d)]
            if still:
                if len(still) != len(p.missing):
                    old = p.missing
                    p.missing = still
                    self._journal(lambda: setattr(p, "missing", old))
                return False
            self._drop_pending(pid)
            e = p.event
            self._ensure(e.auction_id)    # its other deps may have been evicted since it was parked
            # a dep stored but not in memory now is another auction's
            reason = (RejectReason.CROSS_AUCTION_DEP if any(d not in self._recs for d in e.deps)
                      else self._check(e))
            if reason is not None:
                self._reject(pid, reason)
                self._cascade(pid)
                return False
            self._apply(e)
            self.counters.released += 1
            accepted.append(e)
            return True

        self._walk_waiters(first, release)

    def _cascade(self, rejected_id: str) -> None:
        """Pending events that depend on a rejected event can never be valid: reject them too."""

        def reject(pid: str) -> bool:
            if pid not in self._pending:
                return False
            p = self._drop_pending(pid)
            self._unresolved.append(Unresolved(pid, p.origin, RejectReason.INVALID_DEP.value))
            self._reject(pid, RejectReason.INVALID_DEP)
            return True

        self._walk_waiters(rejected_id, reject)

    # ---------------------------------------------------------------- rejections

    def _count_reject(self, reason: RejectReason) -> None:
        key = reason.value
        self.counters.rejected[key] = self.counters.rejected.get(key, 0) + 1

    def _reject(self, eid: str, reason: RejectReason, *, remember: bool = True) -> Outcome:
        self._count_reject(reason)
        if remember and reason in CONTENT_REASONS:
            self._rejected[eid] = reason
            self._journal(lambda: self._rejected.pop(eid, None))
            if len(self._rejected) > _REJECTED_MEMORY:
                self._rejected.popitem(last=False)
        return Outcome(OutcomeKind.REJECTED, eid, (), reason)

    def _reject_undecodable(self, reason: RejectReason) -> Outcome:
        self._count_reject(reason)
        return Outcome(OutcomeKind.REJECTED, None, (), reason)


def _view(a: _Auction) -> AuctionView:
    """The auction's view in O(closes), whatever its bid count: the summary comes from the
    aggregates _apply keeps; the bid list is a lazy snapshot (records are append-only and the
    close past is replaced, never mutated, so the cut at this length stays exact)."""
    status = a.status
    past = a.in_close_past
    winner = None
    if status is Status.CLOSED and a.closes[0].best is not None:
        winner = _bid_view(a.closes[0].best, past)
    if status is Status.CLOSED:
        leading = winner
    else:
        leading = _bid_view(a.leading, past) if a.leading is not None else None
    records, count = a.bids, len(a.bids)

    def build_bids() -> tuple[BidView, ...]:
        ordered = sorted(records[:count], key=lambda r: (r.lamport, r.id))
        return tuple(_bid_view(r, past) for r in ordered)

    return AuctionView(
        id=a.rec.id, seller=a.seller, seller_name=a.seller_name, item=a.item,
        currency=a.currency, start_price=a.start_price, min_increment=a.min_increment,
        ends_at=a.ends_at, opened_ts=a.rec.ts, status=status, bid_count=count,
        leading=leading, closes=tuple(sorted(r.id for r in a.closes)), winner=winner,
        price=winner.amount if winner else None,
        closed_ts=min(r.ts for r in a.closes) if a.closes else None,
        _close_past=past, _bids=_LazyBids(build_bids))


def _bid_view(rec: _Rec, close_past: frozenset[str] | None) -> BidView:
    assert rec.amount is not None
    late = close_past is not None and rec.id not in close_past
    return BidView(rec.id, rec.author, rec.name, rec.amount, rec.lamport, rec.ts, late)


def _quick_id(raw: bytes) -> str | None:
    """The id the bytes would have if canonical (a copy of a known event has the same bytes up
    to its signature, which is already verified for the known copy)."""
    if len(raw) > MAX_EVENT_BYTES:
        return None
    try:
        return event_id_of(unsigned_from_raw(bytes(raw)))
    except (ValueError, TypeError):
        return None


def _best_of(deps: tuple[_Rec, ...] | list[_Rec]) -> _Rec | None:
    best: _Rec | None = None
    for d in deps:
        b = d.best
        if b is not None and _better(b, best):
            best = b
    return best
