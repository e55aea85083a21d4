"""The derived state is saved with the events (same transaction); `p2pauction check` re-validates
the store and reports any difference."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from p2pauction.cli import main
from p2pauction.errors import StoreWriteError
from p2pauction.state.replica import Replica
from p2pauction.state.store import AuctionState, MemoryStore, SqliteStore
from tests.cli_schema import validate_output
from tests.state_helpers import NET, author, reference_scenario
from tests.test_state_storage_faults import FlakyMemoryStore


def _saved_equals_ledger(replica: Replica, store: SqliteStore | MemoryStore) -> None:
    ledger = replica.ledger
    assert store.load_derived() == (ledger.digest, ledger.counters.accepted)
    assert list(store.auction_states()) == [AuctionState.of(ledger.auction(a), ledger.heads(a))
                                            for a in sorted(ledger.auction_ids())]


def _node_dir(tmp_path: Path) -> tuple[Path, str]:
    s = reference_scenario()
    d = tmp_path / "node"
    d.mkdir()
    store = SqliteStore(d / "store.db")
    replica = Replica(NET, store)
    for e in s.events:
        replica.receive_raw(e.raw)
    _saved_equals_ledger(replica, store)
    store.close()
    return d, s.pic1


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_derived_state_saved_with_every_commit(tmp_path: Path, kind: str) -> None:
    store: SqliteStore | MemoryStore = SqliteStore(tmp_path / "s.db") if kind == "sqlite" else MemoryStore()
    replica = Replica(NET, store)
    s = reference_scenario()
    for e in s.events:
        replica.receive_raw(e.raw)
        _saved_equals_ledger(replica, store)
    with replica.batch():
        c4 = author(4, "C4")
        replica.receive(c4.bid(replica.ledger, s.pic2, Decimal(61), wall_ms=2000))
    _saved_equals_ledger(replica, store)


def test_a_failed_commit_keeps_the_saved_derived_state(tmp_path: Path) -> None:
    store = FlakyMemoryStore()
    replica = Replica(NET, store)
    s = reference_scenario()
    for e in s.events[:-1]:
        replica.receive_raw(e.raw)
    before = (store.load_derived(), list(store.auction_states()))
    store.fail_next = 1
    with pytest.raises(StoreWriteError):
        replica.receive_raw(s.events[-1].raw)
    assert (store.load_derived(), list(store.auction_states())) == before
    replica.receive_raw(s.events[-1].raw)
    _saved_equals_ledger(replica, store)


def test_an_old_store_gets_its_derived_state_at_start(tmp_path: Path) -> None:
    d, _ = _node_dir(tmp_path)
    db = sqlite3.connect(d / "store.db")
    with db:
        db.execute("DELETE FROM meta WHERE key IN ('digest', 'accepted')")
        db.execute("DELETE FROM auction_state")
    db.close()
    assert main(["check", "--data-dir", str(d)]) == 1
    store = SqliteStore(d / "store.db")
    _saved_equals_ledger(Replica(NET, store), store)
    store.close()
    assert main(["check", "--data-dir", str(d)]) == 0


def test_check_passes_on_a_sound_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = _node_dir(tmp_path)
    assert main(["check", "--data-dir", str(d), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["events"] == report["accepted"] == 6 and report["auctions"] == 2
    validate_output("check", report)


@pytest.mark.parametrize("corruption, expected", [
    ("UPDATE auction_state SET leading = NULL WHERE auction = :pic1", "leading="),
    ("UPDATE auction_state SET heads = 'ab' WHERE auction = :pic1", "heads="),
    ("DELETE FROM auction_state WHERE auction = :pic1", "no saved state"),
    ("UPDATE meta SET value = '0' WHERE key = 'accepted'", "saved accepted count 0"),
    ("UPDATE meta SET value = printf('%064d', 7) WHERE key = 'digest'", "saved digest"),
    ("UPDATE finished SET price = '1' WHERE auction = :pic1", "differs in price"),
    ("DELETE FROM finished WHERE auction = :pic1", "has no history row"),
    ("UPDATE meta SET value = '{\"open\": 9}' WHERE key = 'status_counts'", "saved status counts"),
    ("UPDATE claims SET name = 'Mallory' WHERE name = 'C2'", "saved name claim"),
    ("DELETE FROM claims WHERE name = 'C3'", "no saved name claim"),
    ("UPDATE id_buckets SET count = count + 1 WHERE prefix = substr(:pic1, 1, 3)", "anti-entropy bucket"),
    ("UPDATE stats_rollup SET n = n + 1 WHERE level = 7 AND kind = 0 AND key = 'closed'", "stats rollup"),
])
def test_check_reports_a_corrupt_derived_state(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               corruption: str, expected: str) -> None:
    d, pic1 = _node_dir(tmp_path)
    db = sqlite3.connect(d / "store.db")
    with db:
        assert db.execute(corruption, {"pic1": pic1}).rowcount == 1
    db.close()
    assert main(["check", "--data-dir", str(d)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("MISMATCH") and expected in out, out
    assert main(["check", "--data-dir", str(d), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    validate_output("check", report)
    assert not report["ok"] and report["problem_count"] >= 1


def test_check_reports_a_stored_event_that_does_not_validate(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    d, pic1 = _node_dir(tmp_path)
    db = sqlite3.connect(d / "store.db")
    with db:  # a flipped signature byte: the node trusted its store, the check does not
        raw = db.execute("SELECT raw FROM events WHERE id = ?", (pic1,)).fetchone()[0]
        text = bytes(raw).decode()
        i = text.index('"sig":"') + 7
        flipped = text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:]
        db.execute("UPDATE events SET raw = ? WHERE id = ?", (flipped.encode(), pic1))
    db.close()
    assert main(["check", "--data-dir", str(d)]) == 1
    assert "rejected" in capsys.readouterr().out


def test_check_needs_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--data-dir", str(tmp_path)]) == 1
    assert "no store at" in capsys.readouterr().err




@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_late_bid_after_the_close_updates_the_history_row(tmp_path: Path, kind: str) -> None:
    """The analytics rows depend on the events, not their order: a late bid that arrives after
    the close is counted as one that arrived before it would be."""
    from p2pauction.state.ledger import Ledger

    seller, bidder, late_bidder = author(1, "S"), author(2, "B"), author(3, "L")
    fork = Ledger(NET)
    store: SqliteStore | MemoryStore = SqliteStore(tmp_path / "s.db") if kind == "sqlite" else MemoryStore()
    replica = Replica(NET, store)
    opened = seller.open(fork, item="Vase", start_price=Decimal(5), wall_ms=1)
    fork.receive(opened)
    bid = bidder.bid(fork, opened.id, Decimal(6), wall_ms=2)
    fork.receive(bid)
    late = late_bidder.bid(fork, opened.id, Decimal(7), wall_ms=4)   # never sees the close
    for e in (opened, bid):
        replica.receive(e)
    close = seller.close(replica.ledger, opened.id, wall_ms=3)
    replica.receive(close)
    replica.receive(late)
    other = Replica(NET, MemoryStore())
    for e in (opened, bid, late, close):
        other.receive(e)
    assert store.history(None, None) == other.store.history(None, None)
    assert store.history(None, None)[0]["late_bids"] == 1
    assert store.stats(None, None) == other.store.stats(None, None)
    if isinstance(store, SqliteStore):   # the rows written bid by bid equal a full re-validation
        from p2pauction.state.check import check_store

        assert check_store(store, NET).ok
        store.close()   # a restart: the next late bid is added from the saved auction state
        store = SqliteStore(tmp_path / "s.db")
        replica = Replica(NET, store)
        two_late = late_bidder.bid(fork, opened.id, Decimal(8), wall_ms=5)
        replica.receive(two_late)
        other.receive(two_late)
        assert store.history(None, None) == other.store.history(None, None)
        assert store.stats(None, None) == other.store.stats(None, None)
        assert check_store(store, NET).ok
