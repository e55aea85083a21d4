"""Stores: reopen gives the same state, kill -9 loses nothing acknowledged, analytics are exact."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from p2pauction.errors import StoreError
from p2pauction.state.events import Event, decode_event
from p2pauction.state.replica import Replica
from p2pauction.state.store import EventStore, MemoryStore, SqliteStore
from tests.state_helpers import NET, author, reference_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_write_close_reopen_gives_identical_digest(tmp_path: Path) -> None:
    s = reference_scenario()
    path = tmp_path / "store.db"
    replica = Replica(NET, SqliteStore(path))
    for e in s.events:
        replica.receive_raw(e.raw)
    replica.store.remember_peer("ab" * 32, "127.0.0.1:7001", 5.0)
    digest = replica.ledger.digest_hex
    replica.store.close()
    store = SqliteStore(path)
    again = Replica(NET, store)
    assert again.ledger.digest_hex == digest == s.ledger.digest_hex
    assert again.ledger.auction(s.pic1).to_json() == s.ledger.auction(s.pic1).to_json()
    assert store.known_peers() == [("ab" * 32, "127.0.0.1:7001")]
    assert len(store) == len(s.events)
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_duplicates_stored_once_and_rejects_never(tmp_path: Path) -> None:
    s = reference_scenario()
    replica = Replica(NET, SqliteStore(tmp_path / "s.db"))
    for e in s.events + s.events:
        replica.receive_raw(e.raw)
    replica.receive_raw(b"garbage")
    assert len(replica.store) == len(s.events)
    assert [decode_event(r).id for r in replica.store.iter_raw()] == [e.id for e in s.events]


def test_other_net_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Replica(NET, SqliteStore(path)).store.close()
    with pytest.raises(StoreError, match="network"):
        Replica("another-net", SqliteStore(path))
    with pytest.raises(StoreError, match="network"):
        SqliteStore(path, net="another-net")
    mem = MemoryStore()
    Replica(NET, mem)
    with pytest.raises(StoreError):
        Replica("another-net", mem)


def test_corrupt_store_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="is corrupt .*backup"):
        SqliteStore(path)


def test_peers_most_recent_first() -> None:
    for store in (SqliteStore(":memory:"), MemoryStore()):
        store.remember_peer("a" * 64, "h:1", 1.0)
        store.remember_peer("b" * 64, "h:2", 3.0)
        store.remember_peer("a" * 64, "h:3", 5.0)
        assert store.known_peers() == [("a" * 64, "h:3"), ("b" * 64, "h:2")]
        assert store.known_peers(1) == [("a" * 64, "h:3")]


def test_known_peers_are_bounded_keeping_the_most_recent() -> None:
    # A peer that mints keys must not grow the peers table without bound.
    from p2pauction.state.store import MAX_KNOWN_PEERS
    for store in (SqliteStore(":memory:"), MemoryStore()):
        for i in range(MAX_KNOWN_PEERS + 50):
            store.remember_peer(f"{i:064x}", f"h:{i}", float(i))
        kept = store.known_peers(limit=10 * MAX_KNOWN_PEERS)
        assert len(kept) == MAX_KNOWN_PEERS
        assert kept[0] == (f"{MAX_KNOWN_PEERS + 49:064x}", f"h:{MAX_KNOWN_PEERS + 49}")
        assert (f"{0:064x}", "h:0") not in kept


def test_receive_many_one_transaction(tmp_path: Path) -> None:
    s = reference_scenario()
    replica = Replica(NET, SqliteStore(tmp_path / "s.db"))
    outcomes = replica.receive_many([e.raw for e in reversed(s.events)])
    assert sum(len(o.accepted) for o in outcomes) == len(s.events)
    assert replica.ledger.digest_hex == s.ledger.digest_hex
    assert [r["auction"] for r in replica.store.history(None, None)] == [s.pic1]
    # released pending events were stored in causal order: a rebuild accepts every one of them
    again = Replica(NET, replica.store)
    assert again.ledger.digest_hex == s.ledger.digest_hex and again.ledger.counters.pending == 0


def _rows_seen_by_another_connection(path: Path) -> int:
    return int(sqlite3.connect(path).execute("SELECT COUNT(*) FROM events").fetchone()[0])


def test_batch_is_one_transaction_committed_at_the_end(tmp_path: Path) -> None:
    s = reference_scenario()
    path = tmp_path / "s.db"
    replica = Replica(NET, SqliteStore(path))
    with replica.batch():
        for e in s.events:  # one by one, as gossip frames arrive (the close records a finished auction)
            replica.receive_raw(e.raw)
        with replica.batch():  # nested: joins the open transaction
            replica.store.remember_peer("ab" * 32, "127.0.0.1:7001", 5.0)
        assert _rows_seen_by_another_connection(path) == 0  # nothing committed yet
        # (written at the batch's end, in one statement) yet the events are served from the batch
        assert all(replica.get_raw(e.id) == e.raw for e in s.events)
    assert _rows_seen_by_another_connection(path) == len(s.events)
    assert [r["auction"] for r in replica.store.history(None, None)] == [s.pic1]
    assert Replica(NET, SqliteStore(path)).ledger.digest_hex == s.ledger.digest_hex


def test_batch_undoes_everything_when_the_block_raises(tmp_path: Path) -> None:
    s = reference_scenario()
    path = tmp_path / "s.db"
    replica = Replica(NET, SqliteStore(path))
    with pytest.raises(RuntimeError):
        with replica.batch():
            replica.receive_raw(s.events[0].raw)
            raise RuntimeError("a bug in the caller")
    # neither the store nor the ledger keeps the event: the two stay in step
    assert _rows_seen_by_another_connection(path) == 0
    assert not replica.ledger.has(s.events[0].id) and replica.ledger.digest == 0
    assert replica.get_raw(s.events[0].id) is None
    replica.receive_raw(s.events[0].raw)  # and both are usable afterwards (autocommit again)
    replica.receive_raw(s.events[1].raw)
    assert _rows_seen_by_another_connection(path) == 2 and len(replica.ledger) == 2


def test_memory_store_batch_commits_at_the_end() -> None:
    s = reference_scenario()
    replica = Replica(NET, MemoryStore())
    with replica.batch():
        replica.receive_raw(s.events[0].raw)
        assert len(replica.store) == 0 and replica.get_raw(s.events[0].id) == s.events[0].raw
    assert len(replica.store) == 1


# ------------------------------------------------------------------ kill -9

_CHILD = textwrap.dedent("""
    import sys
    from decimal import Decimal
    sys.path.insert(0, {root!r})
    from p2pauction.state.replica import Replica
    from p2pauction.state.store import SqliteStore
    from tests.state_helpers import NET, author
    replica = Replica(NET, SqliteStore({path!r}))
    seller, bidder = author(1), author(2)
    ledger = replica.ledger
    event = seller.open(ledger, item="Pic", start_price=Decimal(1), wall_ms=1)
    n = 0
    while True:
        outcome = replica.receive(event)
        assert outcome.kind == "accepted", outcome
        print(event.id, flush=True)      # acknowledged: the append has returned
        n += 1
        event = (bidder if n % 2 else author(3)).bid(ledger, event.auction_id, Decimal(n + 1), wall_ms=1 + n)
""")


def test_sigkill_right_after_ack_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(root=str(ROOT), path=str(path))],
                            stdout=subprocess.PIPE, text=True)
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        while len(acked) < 40:
            line = proc.stdout.readline()
            assert line, "the child died before acknowledging 40 events"
            acked.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)   # the child keeps writing: kill it mid-stream
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    replica = Replica(NET, SqliteStore(path))
    assert all(replica.ledger.has(eid) for eid in acked)
    assert len(replica.ledger) >= len(acked)


# ------------------------------------------------------------------ analytics


def _market(replica: Replica) -> dict[str, str]:
    """Five finished auctions in two currencies (closed at ts 100..500) and one still open."""
    L = replica.ledger
    s1, s2, b1, b2 = author(1, "S1"), author(2, "S2"), author(3, "B1"), author(4, "B2")

    def do(e: Event) -> Event:
        assert replica.receive(e).kind == "accepted"
        return e

    def opened(seller, currency: str = "USDt") -> str:  # type: ignore[no-untyped-def]
        return do(seller.open(L, item=f"item{len(L)}", start_price=Decimal(0), currency=currency, wall_ms=1)).id

    ids: dict[str, str] = {}
    ids["a1"] = opened(s1)
    do(b1.bid(L, ids["a1"], Decimal(10), wall_ms=2))
    do(b2.bid(L, ids["a1"], Decimal("10.1"), wall_ms=3))
    do(s1.close(L, ids["a1"], wall_ms=100))                      # B2 wins 10.1 USDt
    ids["a2"] = opened(s1)
    do(b1.bid(L, ids["a2"], Decimal("0.2"), wall_ms=4))
    do(s1.close(L, ids["a2"], wall_ms=200))                      # B1 wins 0.2 USDt
    ids["a3"] = opened(s2, "EUR")
    do(b2.bid(L, ids["a3"], Decimal(7), wall_ms=5))
    do(b1.bid(L, ids["a3"], Decimal(8), wall_ms=6))
    do(s2.close(L, ids["a3"], wall_ms=300))                      # B1 wins 8 EUR
    ids["a4"] = opened(s2)
    do(s2.close(L, ids["a4"], wall_ms=400))                      # unsold
    ids["a5"] = opened(s1)
    from p2pauction.state.ledger import Ledger
    stale = Ledger(NET)
    stale.receive_raw(replica.get_raw(ids["a5"]) or b"")
    do(b2.bid(L, ids["a5"], Decimal(1), wall_ms=7))
    do(s1.close(L, ids["a5"], wall_ms=500))
    do(s1.close(stale, ids["a5"], wall_ms=501))                  # a second close: disputed
    ids["a6"] = opened(s2)                                       # still open
    ids.update(s1=s1.identity.public_hex, s2=s2.identity.public_hex, b1=b1.identity.public_hex,
               b2=b2.identity.public_hex)
    return ids


def _sqlite(p: Path) -> EventStore:
    return SqliteStore(p / "s.db")


def _memory(p: Path) -> EventStore:
    return MemoryStore()


STORES: dict[str, Callable[[Path], EventStore]] = {"sqlite": _sqlite, "memory": _memory}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_history_over_a_window(tmp_path: Path, kind: str) -> None:
    replica = Replica(NET, STORES[kind](tmp_path))
    ids = _market(replica)
    rows = replica.store.history(None, None)
    assert [r["auction"] for r in rows] == [ids[a] for a in ("a1", "a2", "a3", "a4", "a5")]
    assert [r["status"] for r in rows] == ["closed"] * 4 + ["disputed"]
    assert [r["price"] for r in rows] == ["10.1", "0.2", "8", None, None]
    assert rows[0]["winner"] == ids["b2"] and rows[0]["winner_name"] == "B2" and rows[0]["seller_name"] == "S1"
    assert rows[4]["closed_ts"] == 500
    window = replica.store.history(200, 400)                 # since inclusive, until exclusive
    assert [r["auction"] for r in window] == [ids["a2"], ids["a3"]]
    assert replica.store.history(501, None) == []


@pytest.mark.parametrize("kind", sorted(STORES))
def test_stats_exact_over_a_window(tmp_path: Path, kind: str) -> None:
    replica = Replica(NET, STORES[kind](tmp_path))
    ids = _market(replica)
    st = replica.store.stats(None, None)
    assert (st["finished"], st["closed"], st["disputed"], st["unsold"]) == (5, 4, 1, 1)
    # 10.1 + 0.2 is 10.299999999999999 in floats: the sums must be exact
    assert st["currencies"] == {"EUR": {"count": 1, "volume": "8", "average": "8", "max": "8"},
                                "USDt": {"count": 2, "volume": "10.3", "average": "5.15", "max": "10.1"}}
    assert [(e["key"], e["count"], e["sold"], e["volume"]) for e in st["top_sellers"]] == [
        (ids["s1"], 3, 2, {"USDt": "10.3"}), (ids["s2"], 2, 1, {"EUR": "8"})]
    assert [(e["key"], e["name"], e["wins"], e["bids"], e["volume"]) for e in st["top_bidders"]] == [
        (ids["b1"], "B1", 2, 3, {"EUR": "8", "USDt": "0.2"}), (ids["b2"], "B2", 1, 3, {"USDt": "10.1"})]
    assert [e["key"] for e in st["top_bidders_by_volume"]["USDt"]] == [ids["b2"], ids["b1"]]
    assert st["top_sellers_by_volume"]["EUR"] == [{"key": ids["s2"], "name": "S2", "volume": "8"}]
    part = replica.store.stats(200, 400)
    assert part["finished"] == 2
    assert part["currencies"]["USDt"] == {"count": 1, "volume": "0.2", "average": "0.2", "max": "0.2"}
    assert [e["key"] for e in part["top_bidders"]] == [ids["b1"], ids["b2"]]
    assert replica.store.stats(10_000, None)["currencies"] == {}


def test_average_is_rounded_half_even_to_8_decimals() -> None:
    from p2pauction.state.store import compute_stats

    rows = [{"auction": str(i), "seller": "s", "seller_name": None, "currency": "X", "winner": "w",
             "winner_name": None, "price": p, "closed_ts": i, "status": "closed"}
            for i, p in enumerate(("1", "1", "2"))]
    assert compute_stats(rows, [], None, None)["currencies"]["X"]["average"] == "1.33333333"


def test_analytics_survive_reopen(tmp_path: Path) -> None:
    replica = Replica(NET, SqliteStore(tmp_path / "s.db"))
    _market(replica)
    before = replica.store.stats(None, None)
    replica.store.close()
    assert SqliteStore(tmp_path / "s.db").stats(None, None) == before
