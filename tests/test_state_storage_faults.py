"""Storage faults: a failed store write changes nothing, is reported, and the next write works.

Defect 2 of issue 11: with a full disk, a bid failed with "database or disk is full" yet stayed in
the node's memory and views; the next acknowledged bid depended on it, so it was pending forever
at peers and dropped by the node itself after a restart. These tests make the store's commit fail
(sqlite3 "database or disk is full" and "disk I/O error") at chosen commits and check that memory
(ledger, digest, heads, views, pending buffer) and store stay in step.
"""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from p2pauction.errors import StoreError, StoreWriteError
from p2pauction.gossip.actions import Accepted
from p2pauction.state.events import Event
from p2pauction.state.ledger import Ledger
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore, SqliteStore
from tests.gossip_wire import RawPeer, identity, make_core
from tests.state_helpers import NET, author

DISK_FULL = sqlite3.OperationalError("database or disk is full")
IO_ERROR = sqlite3.OperationalError("disk I/O error")


class FlakyConnection:
    """An sqlite3 connection whose commits fail on demand (``fail_next`` of them, with ``error``)."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.fail_next = 0
        self.error: Exception = DISK_FULL
        self.commits = 0
        self.failed = 0

    def _commit_point(self) -> None:
        self.commits += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failed += 1
            raise self.error

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self._commit_point()
        return self.real.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self.real.executemany(sql, rows)

    @property
    def total_changes(self) -> int:
        return self.real.total_changes

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def __enter__(self) -> Any:
        return self.real.__enter__()

    def __exit__(self, kind: Any, value: Any, tb: Any) -> Any:
        if kind is None:
            try:
                self._commit_point()
            except BaseException:
                self.real.rollback()
                raise
        return self.real.__exit__(kind, value, tb)

    def close(self) -> None:
        self.real.close()


def flaky_sqlite(path: Path) -> tuple[SqliteStore, FlakyConnection]:
    store = SqliteStore(path)
    conn = FlakyConnection(store._db)
    store._db = conn  # type: ignore[assignment]
    return store, conn


class FlakyMemoryStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next = 0

    def _check_commit(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StoreWriteError("store memory: cannot save events: database or disk is full")


def snapshot(ledger: Ledger) -> dict[str, Any]:
    """Everything a user or a peer can observe of a ledger."""
    return {
        "digest": ledger.digest_hex, "len": len(ledger), "ids": list(ledger.ids_in_order()),
        "counters": ledger.counters.to_json() | {"rollbacks": 0},
        "auctions": [v.to_json() for v in ledger.auctions()],
        "heads": {aid: ledger.heads(aid) for aid in ledger.auction_ids()},
        "pending": sorted(p for p in ledger._pending),
        "waiting": sorted((d, sorted(w)) for d, w in ledger._waiting.items()),
    }


def stored_ids(replica: Replica) -> set[str]:
    from p2pauction.state.events import decode_event
    return {decode_event(r).id for r in replica.store.iter_raw()}


# --- locally authored events (the CLI's bid) -------------------------------------------------------


@pytest.mark.parametrize("error", [DISK_FULL, IO_ERROR], ids=["disk-full", "io-error"])
def test_failed_commit_of_an_own_bid_changes_nothing_and_the_next_bid_survives(tmp_path: Path,
                                                                            error: Exception) -> None:
    path = tmp_path / "store.db"
    store, conn = flaky_sqlite(path)
    replica = Replica(NET, store)
    seller, bidder = author(1, "S"), author(2, "B")
    aid = replica.receive(seller.open(replica.ledger, item="Pic", start_price=Decimal(10), wall_ms=1)).event_id
    assert aid is not None
    replica.receive(bidder.bid(replica.ledger, aid, Decimal(11), wall_ms=2))
    before = snapshot(replica.ledger)

    doomed = bidder.bid(replica.ledger, aid, Decimal(12), wall_ms=3)
    conn.fail_next, conn.error = 1, error
    with pytest.raises(StoreWriteError) as info:
        replica.receive(doomed)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "nothing was changed" in message
    assert conn.failed == 1
    # memory is exactly as before: the bid is in no view, no head, not in the digest
    assert snapshot(replica.ledger) == before
    assert not replica.ledger.has(doomed.id) and doomed.id not in stored_ids(replica)
    assert replica.ledger.counters.rollbacks == 1

    # space returns: the next bid works, built on the heads that really are stored
    retry = bidder.bid(replica.ledger, aid, Decimal(12), wall_ms=4)
    assert doomed.id not in retry.deps
    assert replica.receive(retry).kind == "accepted"
    view = replica.ledger.auction(aid)
    assert view.leading is not None and view.leading.id == retry.id
    store.close()

    # and it survives a restart: nothing rejected on replay, the same state
    again = Replica(NET, SqliteStore(path))
    assert again.ledger.digest_hex == replica.ledger.digest_hex
    assert again.ledger.has(retry.id) and not again.ledger.has(doomed.id)
    assert again.ledger.counters.rejected == {} and again.ledger.counters.pending == 0


def test_failed_commit_of_a_close_records_no_finished_auction(tmp_path: Path) -> None:
    store, conn = flaky_sqlite(tmp_path / "store.db")
    replica = Replica(NET, store)
    seller, bidder = author(1, "S"), author(2, "B")
    aid = replica.receive(seller.open(replica.ledger, item="Pic", start_price=Decimal(10), wall_ms=1)).event_id
    assert aid is not None
    replica.receive(bidder.bid(replica.ledger, aid, Decimal(11), wall_ms=2))
    close = seller.close(replica.ledger, aid, wall_ms=3)
    conn.fail_next = 1
    with pytest.raises(StoreWriteError):
        replica.receive(close)
    assert replica.ledger.auction(aid).status.value == "open"
    assert store.history(None, None) == []
    assert replica.receive(close).kind == "accepted"
    assert [r["auction"] for r in store.history(None, None)] == [aid]


# --- events from peers, group-committed ------------------------------------------------------------


def _chain(n: int) -> list[Event]:
    """An open and ``n`` bids, each on the previous one (built against a scratch ledger)."""
    ledger = Ledger(NET)
    seller, b1, b2 = author(1, "S"), author(2, "B1"), author(3, "B2")
    events = [seller.open(ledger, item="Pic", start_price=Decimal(1), wall_ms=1)]
    ledger.receive(events[0])
    for i in range(n):
        ev = (b1 if i % 2 else b2).bid(ledger, events[0].id, Decimal(2 + i), wall_ms=2 + i)
        assert ledger.receive(ev).kind == "accepted"
        events.append(ev)
    return events


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_failed_group_commit_undoes_the_whole_chunk_including_released_pending(tmp_path: Path, kind: str) -> None:
    events = _chain(8)
    if kind == "sqlite":
        store, conn = flaky_sqlite(tmp_path / "store.db")
        replica = Replica(NET, store)
    else:
        mem = FlakyMemoryStore()
        replica = Replica(NET, mem)
    replica.receive_raw(events[0].raw)
    replica.receive_raw(events[5].raw, origin="peer-a")     # pending before the chunk (waits on 4)
    before = snapshot(replica.ledger)
    assert before["pending"] == [events[5].id]

    if kind == "sqlite":
        conn.fail_next = 1
    else:
        mem.fail_next = 1
    with pytest.raises(StoreWriteError):
        with replica.batch():
            for ev in events[1:5] + events[7:]:               # 1-4 accepted (release 5), 7-8 pending
                replica.receive_raw(ev.raw)
            assert replica.ledger.has(events[5].id)          # in the open batch: not final yet
    assert snapshot(replica.ledger) == before
    assert stored_ids(replica) == {events[0].id}

    with replica.batch():                                    # the chunk comes again: all of it sticks
        for ev in events[1:]:
            replica.receive_raw(ev.raw)
    assert len(replica.ledger) == len(events) and replica.ledger.counters.pending == 0
    assert stored_ids(replica) == {e.id for e in events}


def test_a_failed_write_inside_a_batch_dooms_the_batch_without_raising_mid_chunk(tmp_path: Path) -> None:
    events = _chain(3)
    store, conn = flaky_sqlite(tmp_path / "store.db")
    replica = Replica(NET, store)

    def failing_executemany(sql: str, rows: Any) -> Any:
        raise DISK_FULL

    conn.executemany = failing_executemany  # type: ignore[method-assign]
    with pytest.raises(StoreWriteError):
        with replica.batch():
            outcomes = [replica.receive_raw(e.raw) for e in events]   # no exception in the middle
            assert [o.kind for o in outcomes] == ["accepted"] * len(events)
    assert len(replica.ledger) == 0 and replica.ledger.digest == 0 and stored_ids(replica) == set()
    del conn.executemany
    with replica.batch():
        for e in events:
            replica.receive_raw(e.raw)
    assert len(replica.ledger) == len(events) == len(stored_ids(replica))


def test_random_commit_failures_keep_memory_equal_to_the_store(tmp_path: Path) -> None:
    """Shuffled deliveries (pending, releases, evictions, duplicates) in batches and single calls,
    a third of the commits failing: after every call the ledger holds exactly what is stored."""
    rng = random.Random(7)
    events = _chain(40)
    store, conn = flaky_sqlite(tmp_path / "store.db")
    replica = Replica(NET, store, pending_max_count=6)
    for _ in range(200):   # (a chunk that stores nothing commits nothing: most store nothing)
        sample = rng.sample(events, rng.randint(1, 8))
        conn.fail_next = 1 if rng.random() < 0.35 else 0
        conn.error = rng.choice([DISK_FULL, IO_ERROR])
        try:
            if rng.random() < 0.5:
                with replica.batch():
                    for ev in sample:
                        replica.receive_raw(ev.raw)
            else:
                replica.receive_many([ev.raw for ev in sample])
        except StoreWriteError:
            pass
        conn.fail_next = 0
        ids = stored_ids(replica)
        assert set(replica.ledger.ids_in_order()) == ids
        assert replica.ledger.digest == sum(int(i, 16) for i in ids) % (1 << 256)
        assert replica.ledger.counters.pending == len(replica.ledger._pending)
    assert conn.failed > 3
    for ev in events:
        replica.receive_raw(ev.raw)
    assert len(replica.ledger) == len(events)
    rebuilt = Replica(NET, SqliteStore(tmp_path / "store.db"))
    assert rebuilt.ledger.digest_hex == replica.ledger.digest_hex


# --- the gossip core: nothing forwarded or acknowledged before the commit --------------------------


def test_core_forwards_and_acknowledges_nothing_of_a_chunk_whose_commit_failed() -> None:
    events = _chain(3)
    core = make_core(1, net=NET)
    store = FlakyMemoryStore()
    core.replica = Replica(core.cfg.net, store)
    sender = RawPeer(core, 5, identity(2), net=core.cfg.net)
    sender.handshake()
    watcher = RawPeer(core, 6, identity(3), net=core.cfg.net, remote="10.9.9.8:5000")
    watcher.handshake()
    core.take_actions()
    sender.collect()
    watcher.collect()
    def chunk() -> bytes:  # one read holding three encrypted EVENT frames (sealed anew each time)
        return b"".join(sender.sealed({"t": "event", "e": e.raw.decode(), "h": 1}) for e in events)

    store.fail_next = 1
    sender.send_bytes(chunk(), now=1.0)
    forwarded = [m for m in watcher.collect() if m["t"] in ("event", "ihave")]
    assert forwarded == [] and sender.closed is None and watcher.closed is None
    assert len(core.replica.ledger) == 0 and len(core.summary) == 0
    assert core.ev.store_failures == 1 and core.ev.accepted == 0

    backlog = core.__dict__.get("_wire_backlog", [])
    assert not any(isinstance(a, Accepted) for a in backlog)
    sender.send_bytes(chunk(), now=2.0)                   # sent again (gossip, anti-entropy)
    accepted = [a for a in core.__dict__.get("_wire_backlog", []) if isinstance(a, Accepted)]
    assert [a.event.id for a in accepted] == [e.id for e in events]
    assert len(core.summary) == len(events) == len(store)
    assert any(m["t"] in ("event", "ihave") for m in watcher.collect())


def test_core_publish_reports_the_store_error_and_spreads_nothing() -> None:
    core = make_core(1, net=NET)
    store = FlakyMemoryStore()
    core.replica = Replica(core.cfg.net, store)
    peer = RawPeer(core, 5, identity(2), net=core.cfg.net)
    peer.handshake()
    peer.collect()
    seller = author(1, "S")
    event = seller.open(core.replica.ledger, item="Pic", start_price=Decimal(1), wall_ms=1)
    store.fail_next = 1
    with pytest.raises(StoreError):
        core.publish(event, 1.0)
    assert not [m for m in peer.collect() if m["t"] in ("event", "ihave")]
    assert len(core.summary) == 0 and len(core.replica.ledger) == 0
    assert core.publish(event, 2.0).kind == "accepted"
    assert len(core.summary) == 1 and len(store) == 1


# --- the node: an auto-close the store failed to commit is retried --------------------------------


def test_node_retries_an_auto_close_the_store_failed_to_commit(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import p2pauction.node as node_module
    from p2pauction.api import AuctionNode

    monkeypatch.setattr(node_module, "AUTO_CLOSE_RETRY_MS", 200)

    async def scenario() -> None:
        async with AuctionNode(tmp_path / "n", network=False, control=False, auto_close_grace=0.0) as node:
            assert node._replica is not None
            store = node._replica.store
            real_append = store.append
            failures: list[int] = []

            def append(events: Any, finished: Any = ()) -> None:
                if any(e.kind == "auction.close" for e in events) and not failures:
                    failures.append(1)
                    raise StoreWriteError("store: cannot save events: database or disk is full")
                real_append(events, finished)

            store.append = append  # type: ignore[method-assign]
            auction = await node.open_auction("Soon", "1", duration=0.3)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while str(node.auction(auction).status) != "closed":
                assert loop.time() < deadline, "the auto-close was not retried"
                await asyncio.sleep(0.05)  # polling interval of a bounded wait
            counters: Any = node.status()["node"]
            assert failures and counters["auto_close_failed"] == 1 and counters["auto_closed"] == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_failed_second_close_keeps_the_first_close_past() -> None:
    """Rolling back a dispute (a second close) restores the first close's past: its bids stay
    not-late (a merge once compared that frozenset with ``set`` and dropped it)."""
    store = FlakyMemoryStore()
    replica = Replica(NET, store)
    seller, bidder = author(1, "S"), author(2, "B")
    fork = Ledger(NET)   # sees the bid but not the first close: its close is concurrent
    opened = seller.open(replica.ledger, item="Vase", start_price=Decimal(5), wall_ms=1)
    replica.receive(opened)
    fork.receive(opened)
    aid = replica.ledger.auction_ids()[0]
    bid = bidder.bid(replica.ledger, aid, Decimal(6), wall_ms=2)
    replica.receive(bid)
    fork.receive(bid)
    replica.receive(seller.close(replica.ledger, aid, wall_ms=3))
    second = seller.close(fork, aid, wall_ms=4)
    before = snapshot(replica.ledger)
    bids: Any = before["auctions"][0]["bids"]
    assert bids[0]["late"] is False
    store.fail_next = 1
    with pytest.raises(StoreWriteError):
        replica.receive(second)
    assert snapshot(replica.ledger) == before
    late = author(3, "L").bid(fork, aid, Decimal(7), wall_ms=5)   # has not seen the close
    assert replica.receive(late).kind == "accepted"
    after: Any = replica.ledger.auction(aid).to_json()["bids"]
    assert [b["late"] for b in after] == [False, True]


def test_a_chunk_that_stores_nothing_opens_and_commits_no_transaction(tmp_path: Path) -> None:
    events = _chain(3)
    store, conn = flaky_sqlite(tmp_path / "store.db")
    replica = Replica(NET, store)
    start = conn.commits
    with replica.batch():
        for ev in events:
            replica.receive_raw(ev.raw)
    assert conn.commits == start + 1
    with replica.batch():                      # duplicates and a pending event: nothing to store
        for ev in events:
            replica.receive_raw(ev.raw)
        replica.receive_raw(_chain(5)[5].raw)
        assert not store._db.in_transaction
    assert conn.commits == start + 1 and replica.ledger.counters.pending == 1
    with replica.batch():
        replica.receive_raw(_chain(4)[4].raw)  # accepted: a commit again
    assert conn.commits == start + 2
