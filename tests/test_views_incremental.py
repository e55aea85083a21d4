"""Issue 11, defect 9: a notification costs O(1) whatever the auction's bid count. Counted, not
timed: building and rendering a notification must not build the auction's bid list."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import p2pauction.state.ledger as ledger_mod
from p2pauction.api import Notification
from p2pauction.state.events import Event
from p2pauction.state.ledger import BidView, Ledger
from tests.state_helpers import NET, accept, author


def hot_auction(bids: int) -> tuple[Ledger, str, list[Event]]:
    ledger = Ledger(NET)
    seller = author(1, "S")
    bidders = [author(2 + i, f"B{i}") for i in range(3)]
    aid = accept(ledger, seller.open(ledger, item="Hot", start_price=Decimal(1), wall_ms=1000)).id
    events = [accept(ledger, bidders[i % 3].bid(ledger, aid, Decimal(1 + i), wall_ms=2000 + i))
              for i in range(bids)]
    return ledger, aid, events


def count_bid_views(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    built = [0]

    def counting(*args: Any, **kwargs: Any) -> BidView:
        built[0] += 1
        return BidView(*args, **kwargs)

    monkeypatch.setattr(ledger_mod, "BidView", counting)
    return built


def test_a_notification_does_not_build_the_bid_list(monkeypatch: pytest.MonkeyPatch) -> None:
    ledger, aid, _ = hot_auction(60)
    bidder = author(9, "Late")
    built = count_bid_views(monkeypatch)
    event = accept(ledger, bidder.bid(ledger, aid, Decimal(1000), wall_ms=9000))
    note = Notification(event=event, auction=ledger.auction(aid), own=False)
    rendered = note.to_json()
    assert note.describe() == "Late bids 1000 USDt on Hot"
    assert rendered["auction"]["bid_count"] == 61 and "bids" not in rendered["auction"]
    assert rendered["auction"]["leading"]["amount"] == "1000"
    assert built[0] <= 2, f"{built[0]} bid views built for one notification"
    assert len(note.auction.bids) == 61         # built on demand, once
    assert built[0] >= 61


def test_a_view_keeps_its_snapshot_after_later_events() -> None:
    ledger, aid, _ = hot_auction(3)
    before = ledger.auction(aid)
    accept(ledger, author(7).bid(ledger, aid, Decimal(50), wall_ms=5000))
    seller = author(1, "S")
    close = accept(ledger, seller.close(ledger, aid, wall_ms=6000))
    after = ledger.auction(aid)
    assert [b.amount for b in before.bids] == [Decimal(1), Decimal(2), Decimal(3)]   # read after the close
    assert not any(b.late for b in before.bids)
    assert after.bid_count == 4 and after.winner is not None and after.winner.amount == Decimal(50)
    assert after.closes == (close.id,)
    assert before != after and after == ledger.auction(aid)
