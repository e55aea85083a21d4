"""Fast end-to-end checks of the state layer (the reference scenario through every component)."""

from __future__ import annotations

import random
from decimal import Decimal

from p2pauction.state.events import decode_event
from p2pauction.state.ledger import Ledger, OutcomeKind, Status
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore, SqliteStore
from tests.state_helpers import NET, reference_scenario


def test_reference_scenario_c2_wins_at_80() -> None:
    s = reference_scenario()
    view = s.ledger.auction(s.pic1)
    assert view.status is Status.CLOSED
    assert view.winner is not None and view.winner.bidder == s.c2 and view.winner.name == "C2"
    assert view.price == Decimal(80)
    assert [b.amount for b in view.bids] == [Decimal(75), Decimal("75.5"), Decimal(80)]
    assert s.ledger.auction(s.pic2).status is Status.OPEN


def test_three_ledgers_in_different_orders_agree() -> None:
    s = reference_scenario()
    for seed in range(3):
        events = list(s.events)
        random.Random(seed).shuffle(events)
        ledger = Ledger(NET)
        for e in events:
            assert ledger.receive_raw(e.raw).kind in (OutcomeKind.ACCEPTED, OutcomeKind.PENDING)
        assert ledger.digest_hex == s.ledger.digest_hex
        view = ledger.auction(s.pic1)
        assert view.winner is not None and view.winner.name == "C2" and view.price == Decimal(80)
        assert view.to_json() == s.ledger.auction(s.pic1).to_json()


def test_replica_stores_and_rebuilds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = reference_scenario()
    for store in (MemoryStore(), SqliteStore(tmp_path / "store.db")):
        replica = Replica(NET, store)
        for e in s.events:
            replica.receive_raw(e.raw)
        assert len(store) == len(s.events)
        assert replica.get_raw(s.pic1) == s.events[0].raw
        again = Replica(NET, store)
        assert again.ledger.digest_hex == s.ledger.digest_hex
        assert [decode_event(r).id for r in store.iter_raw()] == [e.id for e in s.events]
        assert [r["auction"] for r in store.history(None, None)] == [s.pic1]
