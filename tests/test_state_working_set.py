"""The working set (issue 14): a node keeps open auctions and a bounded cache of finished ones in
memory, reads the rest back from its store on demand, and restarts without replaying."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from p2pauction.state.ledger import Status
from p2pauction.state.replica import Replica
from p2pauction.state.store import SqliteStore
from p2pauction.state.validation import RejectReason
from tests.state_helpers import NET, author, forge

SELLER, BIDDER = author(1, "Seller"), author(2, "Bidder")


def _market(replica: Replica, finished: int, still_open: int) -> list[str]:
    """``finished`` closed auctions (one bid each) and ``still_open`` open ones, by the Author API."""
    ledger = replica.ledger
    ids = []
    for i in range(finished + still_open):
        opened = SELLER.open(ledger, item=f"item {i}", start_price=Decimal(1), wall_ms=10 * i)
        assert replica.receive(opened).kind == "accepted"
        bid = BIDDER.bid(ledger, opened.id, Decimal(2), wall_ms=10 * i + 1)
        assert replica.receive(bid).kind == "accepted"
        if i < finished:
            assert replica.receive(SELLER.close(ledger, opened.id, wall_ms=10 * i + 2)).kind == "accepted"
        ids.append(opened.id)
    return ids


def test_the_cache_bounds_finished_auctions_and_never_evicts_open_ones(tmp_path: Path) -> None:
    replica = Replica(NET, SqliteStore(tmp_path / "s.db"), cache_auctions=2)
    ids = _market(replica, finished=6, still_open=3)
    ws = replica.ledger.working_set()
    assert ws.evictable == 2 and ws.auctions == 2 + 3 and ws.evictions == 4
    assert all(replica.ledger.auction(a).status is Status.OPEN for a in ids[6:])
    # a view of an evicted auction reads it back, whole, and it joins the cache (evicting another)
    view = replica.ledger.auction(ids[0])
    assert view.status is Status.CLOSED and view.bid_count == 1 and view.winner is not None
    assert replica.ledger.working_set().loads == 1          # (the open ones were never evicted)
    assert replica.ledger.status_counts() == {"open": 3, "closed": 6, "disputed": 0}


def test_a_copy_of_an_evicted_event_is_a_duplicate_found_by_a_store_lookup(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    replica = Replica(NET, store, cache_auctions=0)
    ids = _market(replica, finished=2, still_open=0)
    raw = store.get_raw(ids[0])
    assert raw is not None and replica.ledger.working_set().auctions == 0
    assert replica.receive_raw(raw).kind == "duplicate"
    assert replica.ledger.working_set().loads == 0 and replica.ledger.has(ids[0])
    assert len(replica.ledger) == 6 and len(store) == 6


def test_a_dep_in_an_evicted_auction_is_still_a_cross_auction_dep(tmp_path: Path) -> None:
    replica = Replica(NET, SqliteStore(tmp_path / "s.db"), cache_auctions=0)
    evicted, target = _market(replica, finished=2, still_open=0)
    assert replica.ledger.working_set().auctions == 0
    bad = forge(BIDDER.identity, kind="bid.place", body={"auction": target, "amount": "50"},
                deps=[evicted], lamport=2, ts=100)
    outcome = replica.receive_raw(bad)
    assert outcome.kind == "rejected" and outcome.reason is RejectReason.CROSS_AUCTION_DEP


def test_a_restart_replays_nothing_and_reads_auctions_back_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = Replica(NET, SqliteStore(path))
    ids = _market(first, finished=3, still_open=2)
    before = (first.ledger.digest_hex, len(first.ledger), first.ledger.status_counts(),
              [first.ledger.auction(a) for a in ids], first.ledger.claimed_name(BIDDER.identity.public_hex))
    first.store.close()
    again = Replica(NET, SqliteStore(path))
    assert again.ledger.working_set().auctions == 0        # nothing replayed: ready at once
    after = (again.ledger.digest_hex, len(again.ledger), again.ledger.status_counts(),
             [again.ledger.auction(a) for a in ids], again.ledger.claimed_name(BIDDER.identity.public_hex))
    assert after == before and before[4] == "Bidder"
    assert again.ledger.working_set().loads == len(ids)


def test_a_store_from_before_the_working_set_is_replayed_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = Replica(NET, SqliteStore(path))
    ids = _market(first, finished=1, still_open=1)
    digest = first.ledger.digest_hex
    first.store.close()
    db = sqlite3.connect(path)
    with db:   # what a store written before the working set lacks
        db.execute("DELETE FROM meta WHERE key = 'archive'")
        db.execute("DELETE FROM claims")
    db.close()
    replayed = Replica(NET, SqliteStore(path))
    assert replayed.ledger.digest_hex == digest and replayed.ledger.working_set().loads == 0
    assert replayed.ledger.working_set().auctions == 2                     # replayed, all in memory
    replayed.store.close()
    again = Replica(NET, SqliteStore(path))
    assert again.ledger.working_set().auctions == 0 and again.ledger.digest_hex == digest
    assert again.ledger.claimed_name(SELLER.identity.public_hex) == "Seller"
    assert again.ledger.auction(ids[0]).status is Status.CLOSED
