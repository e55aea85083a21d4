"""Stores for accepted events, peers and finished-auction analytics.

``MemoryStore`` (simulator) and ``SqliteStore`` (real nodes) implement the same ``EventStore``
protocol.

Failures: a write that fails (disk full, I/O error) raises ``StoreWriteError`` and leaves the store
as it was; inside ``transaction()`` any failed write dooms the whole transaction, which is rolled
back when the block ends (``StoreWriteError`` again), as it is when the block raises. A store
that cannot be read (a corrupt file) raises ``StoreError`` naming the file and what to do.

Analytics (``SqliteStore.stats``) must not cost O(finished auctions): ``stats_rollup`` holds
pre-aggregated figures per time bucket of the close time, at levels of 1, 4, 16, 64, 256, 1024
and 4096 days plus one whole-history bucket, keyed by what each figure groups by (status;
currency: count, volume, max; seller: count, sold; seller and currency: volume; winner and
currency: wins, volume; bidder: bids). A row is counted once per level, in the transaction that
writes the ``finished`` / ``finished_bids`` / ``finished_bidders`` rows it sums; a rewrite
(late close, new winner) subtracts the old rows' contribution and adds the new one's, late bids
add to their bidders. A window is its whole buckets (at most 6 per level, greedy aligned cover)
plus at most two partial days read from ``finished`` by the closed_ts index; the whole history
is one bucket. Volumes are exact: partial sums are canonical decimal strings added with the
``dadd`` SQL function (Decimal, TOTALS_CONTEXT), never REAL. The max per currency cannot be
subtracted: when the price that may hold it is removed, the bucket's max is recomputed (a day
from its rows, a higher level from its children's maxima). Names (first row in (closed_ts,
auction) order) are looked up by index for the top keys only. A store from before the rollups
sums them once when opened (meta key ``stats_rollup``). Prices are stored as canonical money
strings; ``price_num`` is a REAL copy for ordering only.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from p2pauction.errors import StoreError, StoreWriteError
from p2pauction.logs import get_logger
from p2pauction.state.events import BidBody, Event, Kind
from p2pauction.state.idindex import BUCKET_DIGITS, MASK64, IdIndex, SortedIds, bucket_deltas, sums_of
from p2pauction.state.ledger import AuctionView, Status
from p2pauction.state.money import TOTALS_CONTEXT, format_money, format_total

TOP_N = 10
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AuctionState:
    """What the ledger derived for one auction, persisted with the events that changed it (in
    the same transaction), so that ``p2pauction check`` can compare it with a re-validation."""

    auction: str
    status: str
    leading: str | None          # the leading bid (CLOSED: the winner)
    winner: str | None
    heads: tuple[str, ...]       # sorted
    bids: int
    closes: tuple[str, ...]      # sorted

    @classmethod
    def of(cls, view: AuctionView, heads: Sequence[str]) -> AuctionState:
        return cls(view.id, view.status.value, view.leading.id if view.leading else None,
                   view.winner.id if view.winner else None, tuple(sorted(heads)), view.bid_count,
                   tuple(sorted(view.closes)))


@dataclass(frozen=True, slots=True)
class DerivedState:
    """The ledger's state after a commit: its digest, how many events it accepted, the auctions
    those events changed and the name claims of their authors (author, lamport, event, name).
    ``complete``: it covers every auction and claim (then a restart may read the store back
    instead of replaying it)."""

    digest: int
    accepted: int
    auctions: tuple[AuctionState, ...] = ()
    claims: tuple[tuple[str, int, str, str], ...] = ()
    complete: bool = False
    status_counts: tuple[tuple[str, int], ...] = ()   # auctions per status (when the ledger keeps them)


class EventStore(Protocol):
    def append(self, events: Sequence[Event], finished: Sequence[AuctionView] = ()) -> None: ...
    def get_raw(self, event_id: str) -> bytes | None: ...
    def iter_raw(self) -> Iterator[bytes]: ...
    def __len__(self) -> int: ...
    def remember_peer(self, public_hex: str, addr: str, seen_at: float) -> None: ...
    def known_peers(self, limit: int = 100) -> list[tuple[str, str]]: ...
    def record_finished(self, view: AuctionView) -> None: ...
    def history(self, since_ms: int | None, until_ms: int | None, *, limit: int | None = None,
                offset: int = 0) -> list[dict[str, Any]]: ...
    def stats(self, since_ms: int | None, until_ms: int | None) -> dict[str, Any]: ...
    def check_net(self, net: str) -> None: ...
    def close(self) -> None: ...


class DerivedStore(Protocol):
    """A store that also keeps the ledger's derived state (both stores here do)."""

    def save_derived(self, state: DerivedState) -> None: ...
    def load_derived(self) -> tuple[int, int] | None: ...
    def auction_states(self) -> Iterator[AuctionState]: ...


class ArchiveStore(DerivedStore, IdIndex, Protocol):
    """A store the ledger can keep only a working set in front of (ledger.Archive; both stores
    here are): ``archive_ready`` says every stored event's derived state and claims are saved."""

    def archive_ready(self) -> bool: ...
    def auction_of(self, event_id: str) -> str | None: ...
    def auction_events(self, auction_id: str) -> Iterator[tuple[str, bytes]]: ...
    def auction_ids(self, status: str | None = None, prefix: str = "") -> list[str]: ...
    def status_counts(self) -> dict[str, int]: ...
    def claim_of(self, author: str) -> tuple[int, str, str] | None: ...
    def ids_in_order(self) -> Iterator[str]: ...


def finished_row(view: AuctionView) -> dict[str, Any]:
    """The analytics row of a closed or disputed auction."""
    if view.status is Status.OPEN:
        raise StoreError(f"auction {view.id} is still open")
    winner = view.winner
    return {
        "auction": view.id, "seller": view.seller, "seller_name": view.seller_name,
        "item": view.item, "currency": view.currency,
        "winner": winner.bidder if winner else None, "winner_name": winner.name if winner else None,
        "winning_bid": winner.id if winner else None,
        "price": format_money(winner.amount) if winner else None,
        "opened_ts": view.opened_ts, "closed_ts": view.closed_ts, "status": view.status.value,
        "bids": len(view.bids), "late_bids": len(view.late_bids),
    }


def bid_rows(view: AuctionView) -> list[dict[str, Any]]:
    return [{"auction": view.id, "bid": b.id, "bidder": b.bidder, "name": b.name,
             "amount": format_money(b.amount), "late": b.late} for b in view.bids]


def _in_window(ts: int | None, since_ms: int | None, until_ms: int | None) -> bool:
    if ts is None:
        return False
    return (since_ms is None or ts >= since_ms) and (until_ms is None or ts < until_ms)


def _avg(total: Decimal, count: int) -> str:
    # exact sum; the average is rounded half-even to the money grammar's 8 decimals
    with localcontext(TOTALS_CONTEXT):
        return format_total((total / count).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN))


def compute_stats(rows: Iterable[dict[str, Any]], bids: Iterable[dict[str, Any]],
                  since_ms: int | None, until_ms: int | None) -> dict[str, Any]:
    """Analytics over finished-auction rows (already filtered to the window). Volumes are exact
    however large (TOTALS_CONTEXT) and shown with format_total: a sum of legal amounts may
    exceed the largest legal amount."""
    with localcontext(TOTALS_CONTEXT):
        return _compute_stats(rows, bids, since_ms, until_ms)


def _compute_stats(rows: Iterable[dict[str, Any]], bids: Iterable[dict[str, Any]],
                   since_ms: int | None, until_ms: int | None) -> dict[str, Any]:
    rows = list(rows)
    per_cur: dict[str, dict[str, Any]] = {}
    sellers: dict[str, dict[str, Any]] = {}
    bidders: dict[str, dict[str, Any]] = {}
    status_count = {"closed": 0, "disputed": 0, "unsold": 0}
    for r in sorted(rows, key=lambda r: (r["closed_ts"], r["auction"])):
        status_count[r["status"]] += 1
        if r["status"] == "closed" and r["price"] is None:
            status_count["unsold"] += 1
        s = sellers.setdefault(r["seller"], {"key": r["seller"], "name": r["seller_name"], "count": 0,
                                             "sold": 0, "volume": {}})
        s["count"] += 1
        if r["price"] is None:
            continue
        price = Decimal(r["price"])
        cur = r["currency"]
        c = per_cur.setdefault(cur, {"count": 0, "volume": Decimal(0), "max": price})
        c["count"] += 1
        c["volume"] += price
        c["max"] = max(c["max"], price)
        s["sold"] += 1
        s["volume"][cur] = s["volume"].get(cur, Decimal(0)) + price
        w = bidders.setdefault(r["winner"], {"key": r["winner"], "name": r["winner_name"], "bids": 0,
                                             "wins": 0, "volume": {}})
        w["wins"] += 1
        w["volume"][cur] = w["volume"].get(cur, Decimal(0)) + price
    for b in sorted(bids, key=lambda b: (b["auction"], b["bid"])):
        w = bidders.setdefault(b["bidder"], {"key": b["bidder"], "name": b["name"], "bids": 0, "wins": 0,
                                             "volume": {}})
        w["bids"] += 1
        if w["name"] is None:
            w["name"] = b["name"]

    def money_map(m: dict[str, Decimal]) -> dict[str, str]:
        return {k: format_total(v) for k, v in sorted(m.items())}

    def by_volume(table: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for cur in sorted(per_cur):
            ranked = sorted((e for e in table.values() if cur in e["volume"]),
                            key=lambda e: (-e["volume"][cur], e["key"]))[:TOP_N]
            out[cur] = [{"key": e["key"], "name": e["name"], "volume": format_total(e["volume"][cur])}
                        for e in ranked]
        return out

    top_sellers = sorted(sellers.values(), key=lambda e: (-e["sold"], -e["count"], e["key"]))[:TOP_N]
    top_bidders = sorted(bidders.values(), key=lambda e: (-e["wins"], -e["bids"], e["key"]))[:TOP_N]
    return {
        "since": since_ms, "until": until_ms, "finished": len(rows), **status_count,
        "currencies": {cur: {"count": c["count"], "volume": format_total(c["volume"]),
                             "average": _avg(c["volume"], c["count"]), "max": format_money(c["max"])}
                       for cur, c in sorted(per_cur.items())},
        "top_sellers": [{**e, "volume": money_map(e["volume"])} for e in top_sellers],
        "top_bidders": [{**e, "volume": money_map(e["volume"])} for e in top_bidders],
        "top_sellers_by_volume": by_volume(sellers),
        "top_bidders_by_volume": by_volume(bidders),
    }


class MemoryStore:
    """Dict-backed store: survives a simulated crash because the simulator keeps the object.

    It has the same commit semantics as SqliteStore: ``transaction()`` stages the writes and
    applies them all when the block ends, or none (block raised, or ``_check_commit`` refused).
    ``_check_commit`` is where a subclass injects storage faults (the simulator does)."""

    def __init__(self) -> None:
        self._raw: dict[str, bytes] = {}
        self._peers: dict[str, tuple[str, float]] = {}
        self._finished: dict[str, dict[str, Any]] = {}
        self._bids: dict[str, list[dict[str, Any]]] = {}
        self._staged: list[tuple[Sequence[Event], Sequence[AuctionView]]] | None = None
        self._staged_raw: dict[str, bytes] = {}
        self._staged_derived: list[DerivedState] = []
        self._derived: tuple[int, int] | None = None
        self._auction_states: dict[str, AuctionState] = {}
        self._claims: dict[str, tuple[int, str, str]] = {}
        self._by_auction: dict[str, list[str]] = {}     # auction -> its event ids, in commit order
        self._auction_of: dict[str, str] = {}
        self._ids = SortedIds()                         # the gossip core's anti-entropy index
        self.net: str | None = None
        self.closed = False

    def check_net(self, net: str) -> None:
        if self.net is None:
            self.net = net
        elif self.net != net:
            raise StoreError(f"this store holds network {self.net!r}, not {net!r}")

    def _check_commit(self) -> None:
        """Called before every commit; raise StoreWriteError to make it fail (fault injection)."""

    def append(self, events: Sequence[Event], finished: Sequence[AuctionView] = ()) -> None:
        if self._staged is not None:
            self._staged.append((list(events), list(finished)))
            for e in events:
                self._staged_raw.setdefault(e.id, e.raw)
            return
        self._check_commit()
        self._write(events, finished)

    def _write(self, events: Sequence[Event], finished: Sequence[AuctionView]) -> None:
        for e in events:
            if e.id not in self._raw:
                self._raw[e.id] = e.raw
                self._ids.add(e.id)
                self._auction_of[e.id] = e.auction_id
                self._by_auction.setdefault(e.auction_id, []).append(e.id)
        for view in finished:
            self.record_finished(view)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._staged is not None:
            yield
            return
        self._staged = []
        try:
            yield
            if self._staged:
                self._check_commit()
        except BaseException:
            self._staged = None
            self._staged_raw = {}
            self._staged_derived = []
            raise
        staged, self._staged, self._staged_raw = self._staged, None, {}
        derived, self._staged_derived = self._staged_derived, []
        for events, finished in staged:
            self._write(events, finished)
        for state in derived:
            self._write_derived(state)

    def save_derived(self, state: DerivedState) -> None:
        if self._staged is not None:
            self._staged_derived.append(state)
            self._staged.append(((), ()))  # a staged write: the commit is checked
            return
        self._check_commit()
        self._write_derived(state)

    def _write_derived(self, state: DerivedState) -> None:
        self._derived = (state.digest, state.accepted)
        for a in state.auctions:
            self._auction_states[a.auction] = a
        for author, lamport, event_id, name in state.claims:
            self._claims[author] = (lamport, event_id, name)

    def load_derived(self) -> tuple[int, int] | None:
        return self._derived

    def auction_states(self) -> Iterator[AuctionState]:
        return iter(sorted(self._auction_states.values(), key=lambda a: a.auction))

    # the archive (ledger.Archive): every write here came with its derived state and claims
    def archive_ready(self) -> bool:
        return True

    def auction_of(self, event_id: str) -> str | None:
        return self._auction_of.get(event_id)

    def auction_events(self, auction_id: str) -> Iterator[tuple[str, bytes]]:
        return iter([(i, self._raw[i]) for i in self._by_auction.get(auction_id, ())])

    def auction_ids(self, status: str | None = None, prefix: str = "") -> list[str]:
        return sorted(a.auction for a in self._auction_states.values()
                      if (status is None or a.status == status) and a.auction.startswith(prefix))

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self._auction_states.values():
            counts[a.status] = counts.get(a.status, 0) + 1
        return counts

    def claim_of(self, author: str) -> tuple[int, str, str] | None:
        return self._claims.get(author)

    def ids_in_order(self) -> Iterator[str]:
        return iter(list(self._raw))

    # the anti-entropy index (idindex.IdIndex), committed ids only
    def has_id(self, event_id: str) -> bool:
        return self._ids.has_id(event_id)

    def ids_between(self, low: str, high: str) -> list[str]:
        return self._ids.ids_between(low, high)

    def in_store_order(self, ids: Iterable[str]) -> list[str]:
        return self._ids.in_store_order(ids)

    def earliest_between(self, low: str, high: str, limit: int) -> list[str]:
        return self._ids.earliest_between(low, high, limit)

    def bucket_sums(self) -> dict[str, tuple[int, int]]:
        return self._ids.bucket_sums()

    def get_raw(self, event_id: str) -> bytes | None:
        return self._raw.get(event_id) or self._staged_raw.get(event_id)

    def iter_raw(self) -> Iterator[bytes]:
        return iter(list(self._raw.values()))

    def __len__(self) -> int:
        return len(self._raw)

    def remember_peer(self, public_hex: str, addr: str, seen_at: float) -> None:
        self._peers.pop(public_hex, None)
        self._peers[public_hex] = (addr, seen_at)
        if len(self._peers) > MAX_KNOWN_PEERS:
            oldest = min(self._peers.items(), key=lambda kv: (kv[1][1], kv[0]))[0]
            del self._peers[oldest]

    def known_peers(self, limit: int = 100) -> list[tuple[str, str]]:
        ranked = sorted(self._peers.items(), key=lambda kv: (-kv[1][1], kv[0]))
        return [(k, a) for k, (a, _) in ranked[:limit]]

    def record_finished(self, view: AuctionView) -> None:
        self._finished[view.id] = finished_row(view)
        self._bids[view.id] = bid_rows(view)

    def history(self, since_ms: int | None, until_ms: int | None, *, limit: int | None = None,
                offset: int = 0) -> list[dict[str, Any]]:
        rows = [dict(r) for r in self._finished.values()
                if _in_window(r["closed_ts"], since_ms, until_ms)]
        rows.sort(key=lambda r: (r["closed_ts"], r["auction"]))
        return rows[offset:] if limit is None else rows[offset:offset + limit]

    def stats(self, since_ms: int | None, until_ms: int | None) -> dict[str, Any]:
        rows = self.history(since_ms, until_ms)
        bids = [b for r in rows for b in self._bids.get(r["auction"], [])]
        return compute_stats(rows, bids, since_ms, until_ms)

    def close(self) -> None:
        self.closed = True


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    auction TEXT NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS peers (key TEXT PRIMARY KEY, addr TEXT NOT NULL, seen_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS peers_seen ON peers(seen_at);
CREATE TABLE IF NOT EXISTS finished (auction TEXT PRIMARY KEY, seller TEXT NOT NULL, seller_name TEXT,
    item TEXT NOT NULL, currency TEXT NOT NULL, winner TEXT, winner_name TEXT, winning_bid TEXT,
    price TEXT, price_num REAL, opened_ts INTEGER NOT NULL, closed_ts INTEGER NOT NULL,
    status TEXT NOT NULL, bids INTEGER NOT NULL, late_bids INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS finished_closed ON finished(closed_ts);
CREATE INDEX IF NOT EXISTS finished_closed_auction ON finished(closed_ts, auction);
CREATE INDEX IF NOT EXISTS finished_seller ON finished(seller, closed_ts);
CREATE INDEX IF NOT EXISTS finished_winner ON finished(winner, closed_ts);
CREATE INDEX IF NOT EXISTS finished_currency ON finished(currency, closed_ts);
CREATE TABLE IF NOT EXISTS finished_bids (auction TEXT NOT NULL, bid TEXT NOT NULL, bidder TEXT NOT NULL,
    name TEXT, amount TEXT NOT NULL, late INTEGER NOT NULL, PRIMARY KEY (auction, bid));
CREATE INDEX IF NOT EXISTS finished_bids_bidder ON finished_bids(bidder, auction, bid);
CREATE TABLE IF NOT EXISTS finished_bidders (auction TEXT NOT NULL, bidder TEXT NOT NULL, bids INTEGER NOT NULL,
    closed_ts INTEGER NOT NULL, PRIMARY KEY (auction, bidder));
CREATE INDEX IF NOT EXISTS finished_bidders_closed ON finished_bidders(closed_ts, bidder);
CREATE TABLE IF NOT EXISTS auction_state (auction TEXT PRIMARY KEY, status TEXT NOT NULL, leading TEXT,
    winner TEXT, heads TEXT NOT NULL, bids INTEGER NOT NULL, closes TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS auction_state_status ON auction_state(status, auction);
CREATE INDEX IF NOT EXISTS events_auction ON events(auction, seq);
CREATE INDEX IF NOT EXISTS events_seq_id ON events(seq, id);
CREATE TABLE IF NOT EXISTS claims (author TEXT PRIMARY KEY, lamport INTEGER NOT NULL, event TEXT NOT NULL,
    name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS id_buckets (prefix TEXT PRIMARY KEY, hi INTEGER NOT NULL, lo INTEGER NOT NULL,
    count INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats_rollup (level INTEGER NOT NULL, bucket INTEGER NOT NULL, kind INTEGER NOT NULL,
    key TEXT NOT NULL, cur TEXT NOT NULL, n INTEGER NOT NULL, m INTEGER NOT NULL, vol TEXT NOT NULL, mx TEXT,
    PRIMARY KEY (level, bucket, kind, key, cur)) WITHOUT ROWID;
"""
_SCHEMA_VERSION = "1"
_WAL_CHECKPOINT_PAGES = 8192          # x 4 KiB pages
_WAL_SIZE_LIMIT = 64 * 2**20          # the WAL file is truncated back to this after a checkpoint
# Peers are remembered to re-dial after a restart without the bootstrap. Every handshaken key is
# remembered, so a peer minting keys could grow the table: keep the most recently seen ones only.
MAX_KNOWN_PEERS = 1000
# SQLite primary result codes (the sqlite3 module names them only from Python 3.11 on)
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 10, 11, 13, 26
_INSERT = "INSERT OR IGNORE INTO events(id, auction, raw) VALUES (?,?,?)"
_ADD_TO_BUCKET = ("INSERT INTO id_buckets VALUES (?,?,?,?) ON CONFLICT(prefix) DO UPDATE SET "
                  "hi = hi + excluded.hi, lo = lo + excluded.lo, count = count + excluded.count")
_IN_ORDER_CHUNK = 500                 # ids per "IN (...)" query (SQLite's parameter limit is higher)
_FINISHED_COLS = ("auction", "seller", "seller_name", "item", "currency", "winner", "winner_name",
                  "winning_bid", "price", "opened_ts", "closed_ts", "status", "bids", "late_bids")


class SqliteStore:
    """SQLite in WAL mode with synchronous=NORMAL: each append is one committed transaction, which
    survives a crash of the process (kill -9) as soon as append returns (not a power cut)."""

    def __init__(self, path: Path | str, *, net: str | None = None) -> None:
        self.path = str(path)
        self._recorded: dict[str, tuple[Status, tuple[str, ...], int]] = {}
        self._tx_depth = 0  # > 0 inside transaction(): writes join its one open transaction
        self._tx_begun = False  # that transaction's BEGIN ran (a group that writes nothing opens none)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path != ":memory:" and str(mode).lower() != "wal":
                raise StoreError(f"store {self.path}: cannot enable WAL (journal_mode={mode})")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # checkpoints copy the WAL into the database and fsync it: doing that every 32 MiB
            # rather than every 4 MiB roughly halves the cost of storing an event
            self._db.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            self._db.create_aggregate("dsum", 1, _DecimalSum)  # type: ignore[arg-type]
            self._db.create_aggregate("dmax", 1, _DecimalMax)  # type: ignore[arg-type]
            self._db.create_function("dadd", 2, _dadd, deterministic=True)
            self._db.create_function("dmax2", 2, _dmax2, deterministic=True)
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            elif row[0] != _SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema {row[0]}, expected {_SCHEMA_VERSION}")
            # events are never deleted, so the count is the last seq (O(log n); COUNT(*) scans)
            self._count = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
            # every event's derived state and claims saved (a store from before the working set is
            # not: the Replica replays it once and saves them whole); an empty store trivially is
            self._archive_marked = self._db.execute(
                "SELECT 1 FROM meta WHERE key='archive'").fetchone() is not None
            self._archive_complete = self._archive_marked or self._count == 0
            if self._archive_marked and self._db.execute(
                    "SELECT 1 FROM meta WHERE key='status_counts'").fetchone() is None:
                with self._db:   # a store from before the counts were saved: count once
                    self._db.execute("BEGIN")
                    self._db.execute("INSERT INTO meta VALUES ('status_counts', ?)",
                                     (json.dumps(self.status_counts(), sort_keys=True),))
            if self._db.execute("SELECT 1 FROM meta WHERE key='finished_bidders'").fetchone() is None:
                with self._db:   # a store from before that table: fill it once
                    self._db.execute("BEGIN")
                    self.rebuild_finished_bidders()
                    self._db.execute("INSERT INTO meta VALUES ('finished_bidders', '1')")
                    self._db.execute("DELETE FROM meta WHERE key = 'stats_rollup'")  # they count its rows
            if self._db.execute("SELECT 1 FROM meta WHERE key='stats_rollup'").fetchone() is None:
                with self._db:   # a store from before the stats rollups: sum them once
                    self._db.execute("BEGIN")
                    self.rebuild_stats_rollups()
                    self._db.execute("INSERT INTO meta VALUES ('stats_rollup', '1')")
            if self._db.execute("SELECT 1 FROM meta WHERE key='id_buckets'").fetchone() is None:
                with self._db:   # a store from before the anti-entropy buckets: count once
                    self._db.execute("BEGIN")
                    self._db.execute("DELETE FROM id_buckets")
                    self._add_to_buckets(self._in_commit_order("id", 65536))
                    self._db.execute("INSERT INTO meta VALUES ('id_buckets', '1')")
        except (sqlite3.Error, StoreError) as exc:
            if hasattr(self, "_db"):
                self._db.close()
            if isinstance(exc, StoreError):
                raise
            raise self._error("cannot open it", exc) from None
        self._failed: StoreWriteError | None = None  # a write inside the open transaction failed
        if net is not None:
            self.check_net(net)

    def _error(self, doing: str, exc: sqlite3.Error) -> StoreError:
        """Our own one-line error for an SQLite failure: which file, what failed, what to do."""
        text = str(exc)
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF   # the primary result code
        if code in (_SQLITE_FULL, _SQLITE_IOERR) or "disk is full" in text or "disk I/O" in text:
            what = "free some disk space" if code == _SQLITE_FULL or "full" in text else "check the disk"
            return StoreWriteError(f"store {self.path}: {doing}: {text}; nothing was changed, "
                                   f"{what} and retry (the node recovers by itself)")
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
            return StoreError(f"store {self.path} is corrupt ({text}): with the node stopped, restore "
                              "the file from a backup, or move it away to start afresh (the node then "
                              "fetches the network's events again from its peers)")
        return StoreError(f"store {self.path}: {doing}: {text}")

    def _run(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._error("cannot run a query", exc) from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a query and fetch every row (a corrupt page can fail while fetching, too)."""
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from None

    def _write(self, doing: str, write: Callable[[], None]) -> None:
        """Run ``write`` in its own committed transaction, or inside the open transaction(), which
        a failure dooms (SQLite may already have rolled it back: later writes would autocommit)."""
        if self._failed is not None:
            raise self._failed
        try:
            if self._tx_depth:
                if not self._tx_begun:   # the group's transaction starts with its first write
                    self._db.execute("BEGIN")
                    self._tx_begun = True
                write()
            else:
                with self._db:  # committed on exit, rolled back on an exception
                    self._db.execute("BEGIN")
                    write()
        except sqlite3.Error as exc:
            error = self._error(doing, exc)
            if self._tx_depth and isinstance(error, StoreWriteError):
                self._failed = error
            elif not self._tx_depth and self._db.in_transaction:
                self._abort(self._count)  # a failed commit may leave its transaction open
            raise error from None

    def bound_net(self) -> str | None:
        """The network this store was bound to (None before the first check_net)."""
        rows = self._rows("SELECT value FROM meta WHERE key='net'")
        return str(rows[0][0]) if rows else None

    def check_net(self, net: str) -> None:
        """Bind the store to a network on first use; refuse a store of another network."""
        rows = self._rows("SELECT value FROM meta WHERE key='net'")
        if not rows:
            def write() -> None:
                self._db.execute("INSERT INTO meta VALUES ('net', ?)", (net,))

            self._write("cannot bind it to a network", write)
        elif rows[0][0] != net:
            raise StoreError(f"store {self.path} holds network {rows[0][0]!r}, not {net!r} "
                             "(use that --net or another data directory)")

    def append(self, events: Sequence[Event], finished: Sequence[AuctionView] = ()) -> None:
        """Store events (and, optionally, finished-auction rows) in ONE committed transaction
        (or in the open transaction())."""
        rows = [(e.id, e.auction_id, e.raw) for e in events]
        finished = [v for v in finished if not self._already_recorded(v)]
        if not rows and not finished:
            return
        added = 0

        def write() -> None:
            nonlocal added
            before = self._db.total_changes
            self._db.executemany(_INSERT, rows)
            added = self._db.total_changes - before
            if added == len(rows):
                self._add_to_buckets(e.id for e in events)
            else:    # some were stored already: count their buckets again, whole
                self._recount_buckets({e.id[:BUCKET_DIGITS] for e in events})
            for view in finished:
                late = self._late_bids_only(view, events)
                if late is not None:
                    self._add_late_bids(view, late)
                else:
                    self._write_finished(view)

        self._write("cannot save events", write)
        self._count += added
        for view in finished:
            self._recorded[view.id] = (view.status, view.closes, view.bid_count)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group commit: every write inside goes into ONE transaction, committed when the block
        ends. If the block raises, or a write inside failed (StoreWriteError), or the commit
        fails, the transaction is rolled back and nothing inside is stored. Nothing written inside
        is durable before the end, so a caller acknowledges those events only afterwards."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        self._tx_depth = 1
        count = self._count
        try:
            yield
            if self._failed is not None:
                raise self._failed
            if self._tx_begun:
                self._db.execute("COMMIT")
        except BaseException as exc:
            if self._tx_begun:
                self._abort(count)
            if isinstance(exc, sqlite3.Error):
                raise self._error("cannot commit", exc) from None
            raise
        finally:
            self._tx_depth = 0
            self._tx_begun = False
            self._failed = None

    def _abort(self, count: int) -> None:
        """Roll the open transaction back (SQLite may have done so already on a full disk)."""
        self._count = count
        self._recorded.clear()  # those rows may be gone: let them be written again
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def save_derived(self, state: DerivedState) -> None:
        """The ledger's digest, accepted count, changed auctions and claims (in the open transaction)."""
        mark = not self._archive_marked and (state.complete or self._archive_complete)

        def write() -> None:
            meta = [("digest", f"{state.digest:064x}"), ("accepted", str(state.accepted))]
            if state.status_counts:
                meta.append(("status_counts", json.dumps(dict(state.status_counts), sort_keys=True)))
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 meta + [("archive", "1")] if mark else meta)
            self._db.executemany(
                # an upsert, not INSERT OR REPLACE (delete + insert): the (status, auction) index
                # is written only when the status changes, not at every bid
                "INSERT INTO auction_state VALUES (?,?,?,?,?,?,?) ON CONFLICT(auction) DO UPDATE SET "
                "status = excluded.status, leading = excluded.leading, winner = excluded.winner, "
                "heads = excluded.heads, bids = excluded.bids, closes = excluded.closes",
                [(a.auction, a.status, a.leading, a.winner, " ".join(a.heads), a.bids, " ".join(a.closes))
                 for a in state.auctions])
            self._db.executemany("INSERT OR REPLACE INTO claims VALUES (?,?,?,?)", state.claims)

        self._write("cannot save the derived state", write)
        if mark:   # (a rolled-back transaction loses it: the next open replays once more, no harm)
            self._archive_marked = self._archive_complete = True

    # the archive (ledger.Archive): primary-key and index lookups, nothing held in memory
    def archive_ready(self) -> bool:
        return self._archive_complete

    def auction_of(self, event_id: str) -> str | None:
        rows = self._rows("SELECT auction FROM events WHERE id=?", (event_id,))
        return str(rows[0][0]) if rows else None

    def auction_events(self, auction_id: str) -> Iterator[tuple[str, bytes]]:
        rows = self._rows("SELECT id, raw FROM events WHERE auction=? ORDER BY seq", (auction_id,))
        return ((str(i), bytes(raw)) for i, raw in rows)

    def auction_ids(self, status: str | None = None, prefix: str = "") -> list[str]:
        where, params = ["auction >= ?"], [prefix]
        if prefix:
            where.append("auction < ?")
            params.append(prefix + "\U0010ffff")   # ids are hex: past every match
        if status is not None:
            where.append("status = ?")
            params.append(status)
        rows = self._rows(f"SELECT auction FROM auction_state WHERE {' AND '.join(where)} ORDER BY auction", params)
        return [str(r[0]) for r in rows]

    def status_counts(self) -> dict[str, int]:
        """As saved with the last commit; else counted (O(auctions))."""
        rows = self._rows("SELECT value FROM meta WHERE key = 'status_counts'")
        if rows:
            return {str(k): int(v) for k, v in json.loads(rows[0][0]).items()}
        return {str(st): int(n) for st, n in self._rows("SELECT status, COUNT(*) FROM auction_state GROUP BY status")}

    def stored_claims(self) -> list[tuple[str, int, str, str]]:
        """Every saved claim (author, lamport, event, name), for ``p2pauction check``."""
        return [(str(a), int(lamport), str(e), str(n))
                for a, lamport, e, n in self._rows("SELECT author, lamport, event, name FROM claims ORDER BY author")]

    def claim_of(self, author: str) -> tuple[int, str, str] | None:
        rows = self._rows("SELECT lamport, event, name FROM claims WHERE author=?", (author,))
        return (int(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def ids_in_order(self) -> Iterator[str]:
        # a scan of the (seq, id) index: ~20x less to read than the rows with their bytes
        return (str(event_id) for event_id in self._in_commit_order("id", 4096))

    # the anti-entropy index (idindex.IdIndex). Reads on this connection would see its own open
    # transaction, but a Replica batch writes its events only at its end, just before the commit:
    # as with MemoryStore, an event is in the index once committed (the gossip core counts it in
    # its summary then too).
    def has_id(self, event_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM events WHERE id=?", (event_id,)))

    def ids_between(self, low: str, high: str) -> list[str]:
        return [str(r[0]) for r in self._rows("SELECT id FROM events WHERE id >= ? AND id < ? ORDER BY id",
                                              (low, high))]

    def in_store_order(self, ids: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(ids))
        found: list[tuple[int, str]] = []
        for i in range(0, len(wanted), _IN_ORDER_CHUNK):
            chunk = wanted[i:i + _IN_ORDER_CHUNK]
            marks = ",".join("?" * len(chunk))
            found += self._rows(f"SELECT seq, id FROM events WHERE id IN ({marks})", chunk)
        return [str(event_id) for _, event_id in sorted(found)]

    def earliest_between(self, low: str, high: str, limit: int) -> list[str]:
        return [str(r[0]) for r in self._rows("SELECT id FROM events WHERE id >= ? AND id < ? ORDER BY seq LIMIT ?",
                                              (low, high, limit))]

    def bucket_sums(self) -> dict[str, tuple[int, int]]:
        return sums_of(self._rows("SELECT prefix, hi, lo, count FROM id_buckets"))

    def _add_to_buckets(self, ids: Iterable[str]) -> None:
        """Add ids' fingerprints to their buckets (in the open transaction), as two 32-bit halves."""
        deltas = bucket_deltas(ids)
        self._db.executemany(_ADD_TO_BUCKET, [(p, fp >> 32, fp & 0xFFFFFFFF, n)
                                              for p, (fp, n) in deltas.items()])

    def _recount_buckets(self, prefixes: Iterable[str]) -> None:
        for prefix in sorted(prefixes):
            self._db.execute("DELETE FROM id_buckets WHERE prefix=?", (prefix,))
            self._add_to_buckets(self.ids_between(prefix, prefix + "g"))

    def _in_commit_order(self, column: str, page: int) -> Iterator[Any]:
        """One column of every stored event in commit order, read a page at a time."""
        last = 0
        while True:
            rows = self._rows(f"SELECT seq, {column} FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (last, page))
            if not rows:
                return
            for _, value in rows:
                yield value
            last = rows[-1][0]

    def load_derived(self) -> tuple[int, int] | None:
        """(digest, accepted) as last committed, or None for a store written before they were kept."""
        rows = dict(self._rows("SELECT key, value FROM meta WHERE key IN ('digest', 'accepted')"))
        if "digest" not in rows or "accepted" not in rows:
            return None
        return int(rows["digest"], 16), int(rows["accepted"])

    def auction_states(self) -> Iterator[AuctionState]:
        last = ""
        while True:
            rows = self._rows("SELECT auction, status, leading, winner, heads, bids, closes FROM auction_state "
                              "WHERE auction > ? ORDER BY auction LIMIT 2048", (last,))
            if not rows:
                return
            for aid, status, leading, winner, heads, bids, closes in rows:
                yield AuctionState(aid, status, leading, winner, tuple(heads.split()), int(bids),
                                   tuple(closes.split()))
            last = rows[-1][0]

    def rebuild_finished_bidders(self) -> None:
        """Recompute the per-(auction, bidder) bid counts from ``finished_bids`` (in the open
        transaction): ``stats`` counts bids from this table, ~bids/bidders times fewer rows. The
        stats rollups sum its rows: rebuild them afterwards (``rebuild_stats_rollups``)."""
        self._db.execute("DELETE FROM finished_bidders")
        self._db.execute("INSERT INTO finished_bidders SELECT b.auction, b.bidder, COUNT(*), f.closed_ts "
                         "FROM finished_bids b JOIN finished f ON f.auction = b.auction GROUP BY b.auction, b.bidder")

    def rebuild_stats_rollups(self) -> None:
        """Recompute every rollup row from ``finished`` and ``finished_bidders`` (in the open
        transaction): once for a store written before the rollups were kept (O(finished rows))."""
        self._db.execute("DELETE FROM stats_rollup")
        self._rollups_from_rows().apply(self._db)

    def _rollups_from_rows(self) -> _RollupDelta:
        delta = _RollupDelta()
        for ts, status, price, currency, seller, winner in self._db.execute(
                "SELECT closed_ts, status, price, currency, seller, winner FROM finished"):
            delta.add_row(int(ts), _row_parts(status, price, currency, seller, winner), 1)
        for ts, bidder, bids in self._db.execute("SELECT closed_ts, bidder, bids FROM finished_bidders"):
            delta.add_row(int(ts), [(_K_BIDDER, bidder, "", int(bids), 0, None)], 1)
        return delta

    def index_problems(self) -> list[str]:
        """Read-only: the kept summaries that differ from a recount of what they summarise (the
        anti-entropy bucket sums from every stored id, the stats rollups from the finished rows);
        ``p2pauction check`` reports them. Empty when the store is consistent."""
        problems: list[str] = []
        buckets = bucket_deltas(self.ids_in_order())
        expected = {p: (fp & MASK64, n) for p, (fp, n) in buckets.items()}
        saved = self.bucket_sums()
        for prefix in sorted(set(expected) | set(saved)):
            if expected.get(prefix) != saved.get(prefix):
                problems.append(f"anti-entropy bucket {prefix}: saved {saved.get(prefix)}, "
                                f"recounted {expected.get(prefix)} (ids stored under it)")
        with localcontext(TOTALS_CONTEXT):
            want = {k: (n, m, vol, top) for k, (n, m, vol, top) in self._rollups_from_rows().rows.items()
                    if n or m or vol or top is not None}
            kept = {(int(lv), int(b), int(kind), str(key), str(cur)): (int(n), int(m), Decimal(vol),
                                                                      None if mx is None else Decimal(mx))
                    for lv, b, kind, key, cur, n, m, vol, mx in self._rows("SELECT * FROM stats_rollup")}
        for key in sorted(set(want) | set(kept)):
            if want.get(key) != kept.get(key):
                problems.append(f"stats rollup {key}: saved {kept.get(key)}, recounted {want.get(key)}")
        return problems

    def _late_bids_only(self, view: AuctionView, events: Sequence[Event]) -> list[Event] | None:
        """The bids ``events`` add to a finished auction whose rows are already written for the
        same status and closes, when that is all that changed (then they are late bids: not in
        the past of any close); None when its rows must be written whole."""
        held = self._recorded.get(view.id)
        if held is None:   # after a restart: the saved state of the last commit (same transaction as the rows)
            saved = self._db.execute("SELECT status, closes, bids FROM auction_state WHERE auction = ?",
                                     (view.id,)).fetchone()
            if saved is None:
                return None
            held = (Status(saved[0]), tuple(saved[1].split()), int(saved[2]))
        if held[:2] != (view.status, view.closes):
            return None
        bids = [e for e in events if e.auction_id == view.id and e.kind is Kind.BID]
        return bids if held[2] + len(bids) == view.bid_count else None

    def _add_late_bids(self, view: AuctionView, bids: Sequence[Event]) -> None:
        """O(new bids): a late bid does not change the winner, the price or the status."""
        rows = []
        for e in bids:
            body = e.body
            assert isinstance(body, BidBody)
            rows.append((view.id, e.id, e.author, body.name, format_money(body.amount)))
        self._add_late_bid_rows(view.id, rows)

    def _add_late_bid_rows(self, aid: str, rows: Sequence[tuple[str, str, str, str | None, str]]) -> None:
        """The late bids' rows (auction, bid, bidder, name, amount), counted in finished_bidders
        and in the stats rollups (at the auction's close time), in the open transaction."""
        self._db.executemany("INSERT OR IGNORE INTO finished_bids VALUES (?,?,?,?,?,1)", rows)
        self._db.execute("UPDATE finished SET bids = bids + ?, late_bids = late_bids + ? WHERE auction = ?",
                         (len(rows), len(rows), aid))
        self._db.executemany(
            "INSERT INTO finished_bidders SELECT ?, ?, 1, closed_ts FROM finished WHERE auction = ? "
            "ON CONFLICT(auction, bidder) DO UPDATE SET bids = bids + 1", [(aid, r[2], aid) for r in rows])
        closed = self._db.execute("SELECT closed_ts FROM finished WHERE auction = ?", (aid,)).fetchone()
        if closed is not None:   # the hot path of late bids: counts only, no Decimal
            per_bidder: dict[str, int] = {}
            for r in rows:
                per_bidder[r[2]] = per_bidder.get(r[2], 0) + 1
            self._db.executemany(_UPSERT_COUNTS, [(level, bucket, _K_BIDDER, bidder, "", n, 0)
                                                  for level, bucket in _buckets_of(int(closed[0]))
                                                  for bidder, n in per_bidder.items()])

    def _already_recorded(self, view: AuctionView) -> bool:
        # the node and the Replica may both report the same close: write each state once
        return self._recorded.get(view.id) == (view.status, view.closes, view.bid_count)

    def get_raw(self, event_id: str) -> bytes | None:
        rows = self._rows("SELECT raw FROM events WHERE id=?", (event_id,))
        return bytes(rows[0][0]) if rows else None

    def iter_raw(self) -> Iterator[bytes]:
        return (bytes(raw) for raw in self._in_commit_order("raw", 2048))

    def __len__(self) -> int:
        return self._count

    def remember_peer(self, public_hex: str, addr: str, seen_at: float) -> None:
        """Best effort (peers are learnt again): a failed write is logged, not raised; inside a
        transaction it still dooms that transaction."""
        def write() -> None:
            self._db.execute("INSERT INTO peers VALUES (?,?,?) ON CONFLICT(key) DO UPDATE SET "
                             "addr=excluded.addr, seen_at=excluded.seen_at", (public_hex, addr, seen_at))
            self._db.execute("DELETE FROM peers WHERE key NOT IN "
                             "(SELECT key FROM peers ORDER BY seen_at DESC, key LIMIT ?)", (MAX_KNOWN_PEERS,))

        try:
            self._write("cannot remember a peer", write)
        except StoreWriteError as exc:
            log.warning("store_write_failed", what="peer", error=str(exc))

    def known_peers(self, limit: int = 100) -> list[tuple[str, str]]:
        rows = self._rows("SELECT key, addr FROM peers ORDER BY seen_at DESC, key LIMIT ?", (limit,))
        return [(str(k), str(a)) for k, a in rows]

    def record_finished(self, view: AuctionView) -> None:
        """Upsert the analytics rows of a closed or disputed auction (idempotent)."""
        if self._already_recorded(view):
            return
        self._write(f"cannot record auction {view.id}", lambda: self._write_finished(view))
        self._recorded[view.id] = (view.status, view.closes, view.bid_count)

    def _write_finished(self, view: AuctionView) -> None:
        self._write_finished_rows(finished_row(view), bid_rows(view))

    def _write_finished_rows(self, row: dict[str, Any], bids: Sequence[dict[str, Any]]) -> None:
        """Write (or rewrite) one finished auction's rows and move the stats rollups from its
        old rows' contribution, if any (a late close, a changed winner), to the new one's."""
        delta = _RollupDelta()
        old = self._db.execute("SELECT closed_ts, status, price, currency, seller, winner FROM finished "
                               "WHERE auction = ?", (row["auction"],)).fetchone()
        if old is not None:
            old_ts = int(old[0])
            delta.add_row(old_ts, _row_parts(*old[1:]), -1)
            delta.add_row(old_ts, [(_K_BIDDER, b, "", int(n), 0, None) for b, n in self._db.execute(
                "SELECT bidder, bids FROM finished_bidders WHERE auction = ?", (row["auction"],))], -1)
        values = [row[c] for c in _FINISHED_COLS]
        price_num = float(row["price"]) if row["price"] is not None else None
        self._db.execute(
            f"INSERT OR REPLACE INTO finished({', '.join(_FINISHED_COLS)}, price_num) "
            f"VALUES ({', '.join('?' * (len(_FINISHED_COLS) + 1))})", [*values, price_num])
        aid = row["auction"]
        self._db.execute("DELETE FROM finished_bids WHERE auction=?", (aid,))
        self._db.executemany(
            "INSERT INTO finished_bids VALUES (?,?,?,?,?,?)",
            [(b["auction"], b["bid"], b["bidder"], b["name"], b["amount"], int(b["late"])) for b in bids])
        self._db.execute("DELETE FROM finished_bidders WHERE auction=?", (aid,))
        self._db.execute("INSERT INTO finished_bidders SELECT auction, bidder, COUNT(*), ? FROM finished_bids "
                         "WHERE auction=? GROUP BY bidder", (row["closed_ts"], aid))
        new_ts = int(row["closed_ts"])
        delta.add_row(new_ts, _row_parts(row["status"], row["price"], row["currency"], row["seller"],
                                         row["winner"]), 1)
        delta.add_row(new_ts, [(_K_BIDDER, b, "", int(n), 0, None) for b, n in self._db.execute(
            "SELECT bidder, bids FROM finished_bidders WHERE auction = ?", (aid,))], 1)
        delta.apply(self._db)

    @staticmethod
    def _window(since_ms: int | None, until_ms: int | None, column: str = "closed_ts") -> tuple[str, list[Any]]:
        """A WHERE clause (always present, so that callers can add ``AND ...``) and its parameters."""
        where, params = ["1"], []
        if since_ms is not None:
            where.append(f"{column} >= ?")
            params.append(since_ms)
        if until_ms is not None:
            where.append(f"{column} < ?")
            params.append(until_ms)
        return " WHERE " + " AND ".join(where), params

    def history(self, since_ms: int | None, until_ms: int | None, *, limit: int | None = None,
                offset: int = 0) -> list[dict[str, Any]]:
        """One page of the finished auctions closed in [since, until), by (close time, id): a
        range of the (closed_ts, auction) index, so a page costs the same however long the history."""
        where, params = self._window(since_ms, until_ms)
        rows = self._rows(f"SELECT {', '.join(_FINISHED_COLS)} FROM finished{where} "
                          "ORDER BY closed_ts, auction LIMIT ? OFFSET ?",
                          [*params, -1 if limit is None else limit, offset])
        return [dict(zip(_FINISHED_COLS, r)) for r in rows]

    def stats(self, since_ms: int | None, until_ms: int | None) -> dict[str, Any]:
        """The figures of ``compute_stats`` (the reference a test compares with), summed from the
        window's rollup buckets and partial-day edges (see the module docstring): the cost follows
        buckets and parties, not finished auctions; memory O(currencies + parties), never O(rows)."""
        with localcontext(TOTALS_CONTEXT):
            return _SqlStats(self, since_ms, until_ms).compute()

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:  # pragma: no cover
            pass


class _DecimalSum:
    """SQLite aggregate: the exact sum of canonical money strings (a REAL sum would round)."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = TOTALS_CONTEXT.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return str(self.total)


class _DecimalMax:
    """SQLite aggregate: the largest of canonical money strings, compared exactly."""

    def __init__(self) -> None:
        self.best: Decimal | None = None

    def step(self, value: str | None) -> None:
        if value is not None:
            v = Decimal(value)
            if self.best is None or v > self.best:
                self.best = v

    def finalize(self) -> str | None:
        return None if self.best is None else str(self.best)


# --- stats rollups -------------------------------------------------------------------------------
# ``stats_rollup`` holds, per time bucket, the partial figures of the finished auctions closed in
# it: a window's figures are the sum of O(log) whole buckets plus its two partial-day edges, read
# from ``finished`` by the closed_ts index, so ``stats`` does not read every finished row.
DAY_MS = 86_400_000
# bucket widths in days, each a multiple of the previous one (a greedy cover is then minimal):
# a window takes at most 2 x 3 buckets per level; a row is counted in one bucket per level
_LEVEL_DAYS = (1, 4, 16, 64, 256, 1024, 4096)
_ALL = len(_LEVEL_DAYS)   # the level whose one bucket (0) is the whole history
# what a rollup row counts (kind, key, cur -> n, m, vol, mx):
_K_STATUS = 0      # (status, "")       n auctions, m of them without a price
_K_CUR = 1         # ("", currency)     n sold, vol their sum, mx the highest price
_K_SELLER = 2      # (seller, "")       n auctions, m sold
_K_SELLER_VOL = 3  # (seller, currency) n sold, vol
_K_WINNER = 4      # (winner, currency) n wins, vol
_K_BIDDER = 5      # (bidder, "")       n bids (as finished_bidders counts them)
_UPSERT_ROLLUP = ("INSERT INTO stats_rollup VALUES (?,?,?,?,?,?,?,?,?) "
                  "ON CONFLICT(level, bucket, kind, key, cur) DO UPDATE SET n = n + excluded.n, "
                  "m = m + excluded.m, vol = dadd(vol, excluded.vol), mx = dmax2(mx, excluded.mx)")
# the same for a change without money (status, seller and bidder counts): no Python function calls
_UPSERT_COUNTS = ("INSERT INTO stats_rollup VALUES (?,?,?,?,?,?,?,'0',NULL) "
                  "ON CONFLICT(level, bucket, kind, key, cur) DO UPDATE SET n = n + excluded.n, m = m + excluded.m")

# one contribution: (kind, key, cur, n, m, vol or None)
_Part = tuple[int, str, str, int, int, Decimal | None]


def _dec_text(value: Decimal) -> str:
    """An exact partial sum as text (it may be negative while a delta is applied)."""
    with localcontext(TOTALS_CONTEXT):
        return "0" if value.is_zero() else format(value.normalize(), "f")


def _dadd(a: str, b: str) -> str:
    """SQL function: the exact sum of two decimal strings (a REAL sum would round)."""
    return _dec_text(TOTALS_CONTEXT.add(Decimal(a), Decimal(b)))


def _dmax2(a: str | None, b: str | None) -> str | None:
    """SQL function: the larger of two money strings (None: absent), compared exactly."""
    if a is None or b is None:
        return a if b is None else b
    return a if Decimal(a) >= Decimal(b) else b


def _width_ms(level: int) -> int:
    return _LEVEL_DAYS[level] * DAY_MS


def _buckets_of(ts: int) -> list[tuple[int, int]]:
    """The (level, bucket) holding a close time at each level (floor division: any sign)."""
    return [(level, ts // _width_ms(level)) for level in range(len(_LEVEL_DAYS))] + [(_ALL, 0)]


def _row_parts(status: str, price: str | None, currency: str, seller: str, winner: str | None) -> list[_Part]:
    """What one finished row adds to the rollups (its bids are counted from finished_bidders)."""
    unsold = price is None
    parts: list[_Part] = [(_K_STATUS, status, "", 1, int(unsold), None),
                          (_K_SELLER, seller, "", 1, int(not unsold), None)]
    if price is not None:
        amount = Decimal(price)
        parts += [(_K_CUR, "", currency, 1, 0, amount), (_K_SELLER_VOL, seller, currency, 1, 0, amount),
                  (_K_WINNER, winner or "", currency, 1, 0, amount)]
    return parts


class _RollupDelta:
    """Changes to the rollups, summed in Python per row key, then applied in one executemany.

    The maximum price of a bucket cannot be subtracted: when a removed price may have been it
    (not outdone by a price added to the same bucket), the bucket's maximum is recomputed after
    the upserts, bottom-up: a day from its rows in ``finished`` (currency, closed_ts index), a
    higher level from its child buckets' maxima (a few rollup rows)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int, int, str, str], list[Any]] = {}   # -> [n, m, vol, added max]
        self.removed_max: dict[tuple[int, int, str], Decimal] = {}        # (level, bucket, cur) -> price

    def add_row(self, ts: int, parts: Iterable[_Part], sign: int) -> None:
        parts = list(parts)
        with localcontext(TOTALS_CONTEXT):
            for level, bucket in _buckets_of(ts):
                for kind, key, cur, n, m, vol in parts:
                    e = self.rows.setdefault((level, bucket, kind, key, cur), [0, 0, Decimal(0), None])
                    e[0] += sign * n
                    e[1] += sign * m
                    if vol is None:
                        continue
                    e[2] += sign * vol
                    if kind != _K_CUR:
                        continue
                    if sign > 0:
                        e[3] = vol if e[3] is None else max(e[3], vol)
                    else:
                        k = (level, bucket, cur)
                        self.removed_max[k] = max(self.removed_max.get(k, vol), vol)

    def apply(self, db: sqlite3.Connection) -> None:
        money = [(*k, n, m, _dec_text(vol), None if top is None else format_money(top))
                 for k, (n, m, vol, top) in self.rows.items() if vol or top is not None]
        counts = [(*k, n, m) for k, (n, m, vol, top) in self.rows.items()
                  if (n or m) and not vol and top is None]
        db.executemany(_UPSERT_ROLLUP, money)
        db.executemany(_UPSERT_COUNTS, counts)
        emptied = [k for k, e in self.rows.items() if e[0] < 0]
        if emptied:
            db.executemany("DELETE FROM stats_rollup WHERE level=? AND bucket=? AND kind=? AND key=? AND cur=? "
                           "AND n = 0", emptied)
        for (level, bucket, cur), gone in sorted(self.removed_max.items()):   # levels bottom-up
            added = self.rows[(level, bucket, _K_CUR, "", cur)][3]
            if added is not None and added >= gone:
                continue   # the bucket's maximum is at least the added price, which max() kept
            held = db.execute("SELECT mx FROM stats_rollup WHERE level=? AND bucket=? AND kind=? AND key='' "
                              "AND cur=?", (level, bucket, _K_CUR, cur)).fetchone()
            if held is None or held[0] is None or Decimal(held[0]) > gone:
                continue   # emptied, or another row holds a higher maximum
            if level == 0:
                low = bucket * DAY_MS
                top = db.execute("SELECT dmax(price) FROM finished WHERE currency = ? AND closed_ts >= ? "
                                 "AND closed_ts < ? AND price IS NOT NULL", (cur, low, low + DAY_MS)).fetchone()[0]
            else:
                if level == _ALL:
                    lo, hi, child = -2**62, 2**62, _ALL - 1
                else:
                    child = level - 1
                    ratio = _LEVEL_DAYS[level] // _LEVEL_DAYS[child]
                    lo, hi = bucket * ratio, (bucket + 1) * ratio
                top = db.execute("SELECT dmax(mx) FROM stats_rollup WHERE level = ? AND bucket >= ? AND bucket < ? "
                                 "AND kind = ? AND key = '' AND cur = ?", (child, lo, hi, _K_CUR, cur)).fetchone()[0]
            db.execute("UPDATE stats_rollup SET mx = ? WHERE level=? AND bucket=? AND kind=? AND key='' AND cur=?",
                       (None if top is None else format_money(Decimal(top)), level, bucket, _K_CUR, cur))


def _cover(s: int, u: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """[s, u) as runs of whole buckets (level, first, end) and the partial-day edges (ms ranges)."""
    d0, d1 = -(-s // DAY_MS), u // DAY_MS
    if d0 >= d1:
        return [], [(s, u)]
    edges = [(a, b) for a, b in ((s, d0 * DAY_MS), (d1 * DAY_MS, u)) if a < b]
    runs: list[tuple[int, int, int]] = []
    day = d0
    while day < d1:
        level = next(lv for lv in reversed(range(len(_LEVEL_DAYS)))
                     if day % _LEVEL_DAYS[lv] == 0 and day + _LEVEL_DAYS[lv] <= d1)
        b = day // _LEVEL_DAYS[level]
        if runs and runs[-1][0] == level and runs[-1][2] == b:
            runs[-1] = (level, runs[-1][1], b + 1)
        else:
            runs.append((level, b, b + 1))
        day += _LEVEL_DAYS[level]
    return runs, edges


class _SqlStats:
    """One ``stats`` query: the window's rollup buckets and edge rows, summed in Python (memory
    O(currencies + parties in the window)); names come from index lookups for the top keys only."""

    def __init__(self, store: SqliteStore, since_ms: int | None, until_ms: int | None) -> None:
        self.store, self.since, self.until = store, since_ms, until_ms
        self.where, self.params = store._window(since_ms, until_ms, "f.closed_ts")
        self.status: dict[str, list[int]] = {}
        self.cur: dict[str, list[Any]] = {}
        self.seller: dict[str, list[int]] = {}
        self.seller_vol: dict[str, dict[str, Decimal]] = {}
        self.wins: dict[str, int] = {}
        self.win_vol: dict[str, dict[str, Decimal]] = {}
        self.bids: dict[str, int] = {}
        self.names: dict[tuple[str, str], str | None] = {}   # a key ranks in several lists: look up once

    def q(self, sql: str, extra: Sequence[Any] = ()) -> list[Any]:
        return self.store._rows(sql, [*self.params, *extra])

    def add(self, kind: int, key: str, cur: str, n: int, m: int, vol: Decimal, top: Decimal | None) -> None:
        if kind == _K_STATUS:
            e = self.status.setdefault(key, [0, 0])
            e[0] += n
            e[1] += m
        elif kind == _K_CUR:
            c = self.cur.setdefault(cur, [0, Decimal(0), top])
            c[0] += n
            c[1] += vol
            if top is not None and (c[2] is None or top > c[2]):
                c[2] = top
        elif kind == _K_SELLER:
            e = self.seller.setdefault(key, [0, 0])
            e[0] += n
            e[1] += m
        elif kind == _K_SELLER_VOL:
            v = self.seller_vol.setdefault(key, {})
            v[cur] = v.get(cur, Decimal(0)) + vol
        elif kind == _K_WINNER:
            self.wins[key] = self.wins.get(key, 0) + n
            v = self.win_vol.setdefault(key, {})
            v[cur] = v.get(cur, Decimal(0)) + vol
        else:
            self.bids[key] = self.bids.get(key, 0) + n

    def gather(self) -> None:
        """Sum the window's whole buckets and edge rows."""
        store = self.store
        # two queries: each is one step of the closed_ts index (together they would scan it)
        lo = store._rows("SELECT MIN(closed_ts) FROM finished")[0][0]
        hi = store._rows("SELECT MAX(closed_ts) FROM finished")[0][0]
        if lo is None:
            return
        s = lo if self.since is None else max(self.since, lo)
        u = hi + 1 if self.until is None else min(self.until, hi + 1)
        if s >= u:
            return
        runs, edges = ([(_ALL, 0, 1)], []) if (s, u) == (lo, hi + 1) else _cover(s, u)
        for level, first, end in runs:
            for kind, key, cur, n, m, vol, top in store._run(
                    "SELECT kind, key, cur, n, m, vol, mx FROM stats_rollup WHERE level = ? AND bucket >= ? "
                    "AND bucket < ?", (level, first, end)):
                self.add(kind, key, cur, n, m, Decimal(vol), None if top is None else Decimal(top))
        for a, b in edges:
            for status, price, currency, seller, winner in store._run(
                    "SELECT status, price, currency, seller, winner FROM finished WHERE closed_ts >= ? "
                    "AND closed_ts < ?", (a, b)):
                for kind, key, cur, n, m, vol in _row_parts(status, price, currency, seller, winner):
                    self.add(kind, key, cur, n, m, Decimal(0) if vol is None else vol, vol if kind == _K_CUR else None)
            for bidder, bids in store._run("SELECT bidder, bids FROM finished_bidders WHERE closed_ts >= ? "
                                           "AND closed_ts < ?", (a, b)):
                self.add(_K_BIDDER, bidder, "", int(bids), 0, Decimal(0), None)

    def compute(self) -> dict[str, Any]:
        self.gather()
        status_count = {"closed": 0, "disputed": 0, "unsold": 0}
        finished = 0
        for status, (count, unsold) in self.status.items():
            status_count[status] += count
            finished += count
            if status == "closed":
                status_count["unsold"] += unsold
        currencies = {cur: {"count": c[0], "volume": format_total(c[1]), "average": _avg(c[1], c[0]),
                            "max": format_money(c[2])}
                      for cur, c in sorted(self.cur.items()) if c[0]}
        sellers = sorted(((-sold, -count, k) for k, (count, sold) in self.seller.items() if count))[:TOP_N]
        parties = set(self.wins) | {k for k, n in self.bids.items() if n}
        bidders = sorted((-self.wins.get(k, 0), -self.bids.get(k, 0), k) for k in parties)[:TOP_N]
        return {
            "since": self.since, "until": self.until, "finished": finished, **status_count,
            "currencies": currencies,
            "top_sellers": [{"key": k, "name": self.seller_name(k), "count": -c, "sold": -sold,
                             "volume": self.money_map(self.seller_vol.get(k, {}))} for sold, c, k in sellers],
            "top_bidders": [{"key": k, "name": self.bidder_name(k), "bids": -b, "wins": -w,
                             "volume": self.money_map(self.win_vol.get(k, {}))} for w, b, k in bidders],
            "top_sellers_by_volume": {cur: self.by_volume(self.seller_vol, cur, self.seller_name)
                                      for cur in currencies},
            "top_bidders_by_volume": {cur: self.by_volume(self.win_vol, cur, self.bidder_name)
                                      for cur in currencies},
        }

    @staticmethod
    def money_map(volumes: dict[str, Decimal]) -> dict[str, str]:
        return {cur: format_total(v) for cur, v in sorted(volumes.items())}

    @staticmethod
    def by_volume(table: dict[str, dict[str, Decimal]], cur: str,
                  name: Callable[[str], str | None]) -> list[dict[str, Any]]:
        """The TOP_N parties by exact volume in ``cur``."""
        ranked = heapq.nsmallest(TOP_N, ((-v[cur], k) for k, v in table.items() if cur in v))
        return [{"key": k, "name": name(k), "volume": format_total(-v)} for v, k in ranked]

    def seller_name(self, key: str) -> str | None:
        """As compute_stats: the seller name of the seller's first row in (closed_ts, auction) order."""
        if ("seller", key) not in self.names:
            self.names[("seller", key)] = self._seller_name(key)
        return self.names[("seller", key)]

    def bidder_name(self, key: str) -> str | None:
        """As compute_stats: the winner name of its first win, else its first named bid by (auction, bid)."""
        if ("bidder", key) not in self.names:
            self.names[("bidder", key)] = self._bidder_name(key)
        return self.names[("bidder", key)]

    def _seller_name(self, key: str) -> str | None:
        rows = self.q(f"SELECT f.seller_name FROM finished f{self.where} AND f.seller = ? "
                      "ORDER BY f.closed_ts, f.auction LIMIT 1", [key])
        return rows[0][0] if rows else None

    def _bidder_name(self, key: str) -> str | None:
        won = self.q(f"SELECT f.winner_name FROM finished f{self.where} AND f.winner = ? "
                     "AND f.price IS NOT NULL ORDER BY f.closed_ts, f.auction LIMIT 1", [key])
        if won and won[0][0] is not None:
            return str(won[0][0])
        named = self.q("SELECT x.name FROM finished_bids x JOIN finished f ON f.auction = x.auction"
                       f"{self.where} AND x.bidder = ? AND x.name IS NOT NULL ORDER BY x.auction, x.bid LIMIT 1",
                       [key])
        return str(named[0][0]) if named else None
