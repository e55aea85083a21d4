"""Ledger behaviour beyond single rules: pending buffer, disputes, late bids, digest, queries."""

from __future__ import annotations

import hashlib
import random
from decimal import Decimal

import pytest

from p2pauction.errors import NotFound
from p2pauction.state.events import MAX_DEPS, decode_event
from p2pauction.state.ledger import Ledger, OutcomeKind, Status, pending_cost
from tests.state_helpers import NET, accept, author, forge, identity, open_body, reference_scenario

SELLER, BIDDER = identity(1), identity(2)


def chain(n: int) -> list[bytes]:
    """An open followed by n bids, each depending on the previous."""
    raws = [forge(SELLER, kind="auction.open", body=open_body())]
    aid = prev = decode_event(raws[0]).id
    for i in range(n):
        raw = forge(identity(10 + i % 3), kind="bid.place", body={"auction": aid, "amount": str(10 + i)},
                    deps=[prev], lamport=i + 2)
        raws.append(raw)
        prev = decode_event(raw).id
    return raws


def test_pending_released_in_one_call_when_the_root_arrives() -> None:
    raws = chain(6)
    ledger = Ledger(NET)
    for raw in reversed(raws[1:]):
        assert ledger.receive_raw(raw).kind is OutcomeKind.PENDING
    out = ledger.receive_raw(raws[0])
    assert out.kind is OutcomeKind.ACCEPTED
    assert [e.raw for e in out.accepted] == raws       # causal order
    assert ledger.counters.pending == 0 and ledger.counters.pending_bytes == 0
    assert ledger.counters.released == 6


def test_long_pending_chain_released_without_recursion() -> None:
    raws = chain(1500)       # deeper than the default recursion limit
    ledger = Ledger(NET)
    for raw in reversed(raws[1:]):
        ledger.receive_raw(raw)
    assert len(ledger.receive_raw(raws[0]).accepted) == 1501


def test_pending_count_cap_evicts_oldest() -> None:
    raws = chain(5)
    ledger = Ledger(NET, pending_max_count=3)
    for raw in raws[1:]:
        ledger.receive_raw(raw)
    assert ledger.counters.pending == 3 and ledger.counters.evicted == 2
    # the oldest (bids 1 and 2) were evicted: the root releases nothing
    out = ledger.receive_raw(raws[0])
    assert len(out.accepted) == 1
    # re-sending the evicted ones releases the rest
    assert len(ledger.receive_raw(raws[1]).accepted) == 1
    assert len(ledger.receive_raw(raws[2]).accepted) == 4


def test_pending_byte_cap() -> None:
    raws = chain(10)
    # each entry is charged its estimated memory (one dep, one missing): exactly the newest three fit
    cap = sum(pending_cost(decode_event(r), 1) for r in raws[-3:])
    ledger = Ledger(NET, pending_max_bytes=cap)
    for raw in raws[1:]:
        ledger.receive_raw(raw)
    assert ledger.counters.pending_bytes <= cap
    assert ledger.counters.pending == 3 and ledger.counters.evicted == 7


def test_duplicates_counted() -> None:
    raws = chain(2)
    ledger = Ledger(NET)
    ledger.receive_raw(raws[2])                       # pending
    assert ledger.receive_raw(raws[2]).kind is OutcomeKind.DUPLICATE
    for raw in raws:
        ledger.receive_raw(raw)
    assert ledger.receive_raw(raws[0]).kind is OutcomeKind.DUPLICATE
    assert ledger.counters.duplicates == 3 and ledger.counters.accepted == 3   # raws[2] came thrice


def test_double_close_is_disputed_with_both_proofs() -> None:
    ledger = Ledger(NET)
    seller, b = author(1, "S"), author(2, "B")
    aid = accept(ledger, seller.open(ledger, item="Pic", start_price=Decimal(10), wall_ms=1)).id
    bid = accept(ledger, b.bid(ledger, aid, Decimal(12), wall_ms=2))
    c1 = seller.close(ledger, aid, wall_ms=3)
    # a second close authored from a view that does not hold the first one
    partial = Ledger(NET)
    partial.receive_raw(_RAWS[aid])
    c2 = seller.close(partial, aid, wall_ms=4)    # names no winner: it never saw the bid
    assert c1.id != c2.id
    accept(ledger, c1)
    assert ledger.auction(aid).status is Status.CLOSED
    accept(ledger, c2)
    view = ledger.auction(aid)
    assert view.status is Status.DISPUTED
    assert view.closes == tuple(sorted((c1.id, c2.id)))
    assert view.winner is None and view.price is None
    assert view.leading is not None and view.leading.id == bid.id


_RAWS: dict[str, bytes] = {}


@pytest.fixture(autouse=True)
def _remember_raws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capture the bytes of events the tests accept (the ledger does not keep them)."""
    original = Ledger.receive

    def receive(self: Ledger, event, **kw):  # type: ignore[no-untyped-def]
        _RAWS[event.id] = event.raw
        return original(self, event, **kw)

    monkeypatch.setattr(Ledger, "receive", receive)


def test_late_bid_is_kept_and_never_wins() -> None:
    ledger = Ledger(NET)
    seller, b1, b2 = author(1, "S"), author(2, "B1"), author(3, "B2")
    aid = accept(ledger, seller.open(ledger, item="Pic", start_price=Decimal(10), wall_ms=1)).id
    first = accept(ledger, b1.bid(ledger, aid, Decimal(12), wall_ms=2))
    stale = Ledger(NET)                                   # b2's view: the open and first bid only
    stale.receive_raw(_RAWS[aid])
    stale.receive_raw(first.raw)
    close = accept(ledger, seller.close(ledger, aid, wall_ms=3))
    late = b2.bid(stale, aid, Decimal(50), wall_ms=4)
    assert ledger.receive(late).kind is OutcomeKind.ACCEPTED
    view = ledger.auction(aid)
    assert view.status is Status.CLOSED
    assert view.winner is not None and view.winner.id == first.id and view.price == Decimal(12)
    assert [b.id for b in view.late_bids] == [late.id]
    assert view.closes == (close.id,)
    # the same holds when the late bid arrives before the close
    other = Ledger(NET)
    for e in (_RAWS[aid], first.raw, late.raw, close.raw):
        other.receive_raw(e)
    assert other.auction(aid).to_json() == view.to_json()


def test_leading_bid_of_open_auction_is_best_of_all_concurrent_bids() -> None:
    ledger = Ledger(NET)
    aid = accept(ledger, author(1).open(ledger, item="Pic", start_price=Decimal(10), wall_ms=1)).id
    base = Ledger(NET)
    base.receive_raw(_RAWS[aid])
    # three concurrent bids; two tie on amount and lamport: the lower id wins
    bids = [author(2 + i).bid(base, aid, Decimal(amount), wall_ms=2) for i, amount in enumerate(("20", "30", "30"))]
    for e in bids:
        accept(ledger, e)
    expected = min((e for e in bids if e.body.amount == Decimal(30)), key=lambda e: e.id)  # type: ignore[union-attr]
    assert ledger.auction(aid).leading.id == expected.id  # type: ignore[union-attr]
    assert ledger.heads(aid) == tuple(sorted(e.id for e in bids))
    close = author(1).close(ledger, aid, wall_ms=3)
    assert close.body.winner == expected.id  # type: ignore[union-attr]
    accept(ledger, close)
    assert ledger.heads(aid) == (close.id,)


def test_close_with_more_heads_than_max_deps_keeps_the_leader() -> None:
    ledger = Ledger(NET)
    seller = author(1)
    aid = accept(ledger, seller.open(ledger, item="Pic", start_price=Decimal(10), wall_ms=1)).id
    base = Ledger(NET)
    base.receive_raw(_RAWS[aid])
    top = author(2).bid(base, aid, Decimal(1000), wall_ms=2)          # lamport 2: the oldest head
    mid = accept(base, author(3).bid(base, aid, Decimal(100), wall_ms=2))
    others = [author(10 + i).bid(base, aid, Decimal(101 + i), wall_ms=3) for i in range(MAX_DEPS + 8)]
    assert all(e.lamport == 3 for e in others)
    for e in [mid, top, *others]:
        accept(ledger, e)
    assert len(ledger.heads(aid)) == MAX_DEPS + 9
    rebid = author(5).bid(ledger, aid, Decimal(1001), wall_ms=4)   # not accepted: just its deps
    assert len(rebid.deps) == MAX_DEPS and top.id in rebid.deps
    close = seller.close(ledger, aid, wall_ms=4)
    assert len(close.deps) == MAX_DEPS
    assert top.id in close.deps and close.body.winner == top.id  # type: ignore[union-attr]
    assert ledger.receive(close).kind is OutcomeKind.ACCEPTED


def test_digest_is_sum_of_ids() -> None:
    s = reference_scenario()
    expected = sum(int(e.id, 16) for e in s.events) % (1 << 256)
    assert s.ledger.digest == expected and s.ledger.digest_hex == f"{expected:064x}"
    assert len(s.ledger) == len(s.events)


def test_resolve_prefix() -> None:
    s = reference_scenario()
    assert s.ledger.resolve_prefix(s.pic1[:10]) == s.pic1
    assert s.ledger.resolve_prefix(s.pic1.upper()) == s.pic1
    with pytest.raises(NotFound, match="unknown"):
        s.ledger.resolve_prefix("zz")
    common = 0
    while s.pic1[common] == s.pic2[common]:
        common += 1
    if common:
        with pytest.raises(NotFound, match="ambiguous"):
            s.ledger.resolve_prefix(s.pic1[:common])
    with pytest.raises(NotFound, match="empty"):
        s.ledger.resolve_prefix("")
    # a bid id is not an auction id
    with pytest.raises(NotFound):
        s.ledger.auction(s.events[2].id)


def test_auctions_by_status() -> None:
    s = reference_scenario()
    assert [v.id for v in s.ledger.auctions(Status.OPEN)] == [s.pic2]
    assert [v.id for v in s.ledger.auctions(Status.CLOSED)] == [s.pic1]
    assert [v.id for v in s.ledger.auctions()] == [s.pic1, s.pic2]
    assert s.ledger.auctions(Status.DISPUTED) == []
    assert s.ledger.status_counts() == {"open": 1, "closed": 1, "disputed": 0}


def test_view_to_json_is_plain_json() -> None:
    import json

    s = reference_scenario()
    data = s.ledger.auction(s.pic1).to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["price"] == "80" and data["winner"]["name"] == "C2" and data["status"] == "closed"


def test_counters_to_json() -> None:
    ledger = Ledger(NET)
    ledger.receive_raw(b"junk")
    ledger.receive_raw(hashlib.sha256(b"x").digest())
    c = ledger.counters.to_json()
    assert c["rejected"] == 2 and c["rejected_by_reason"] == {"malformed": 2}


def test_copy_of_known_event_is_duplicate_even_with_another_signature() -> None:
    raws = chain(1)
    ledger = Ledger(NET)
    for raw in raws:
        ledger.receive_raw(raw)
    sig_at = raws[1].index(b'"sig":"') + 7
    other_sig = raws[1][:sig_at] + b"0" * 128 + raws[1][sig_at + 128:]
    out = ledger.receive_raw(other_sig)
    assert out.kind is OutcomeKind.DUPLICATE and out.event_id == decode_event(raws[1]).id
    assert len(ledger) == 2 and ledger.counters.duplicates == 1
    # but the same forged copy of an UNKNOWN event is rejected
    fresh = Ledger(NET)
    fresh.receive_raw(raws[0])
    assert fresh.receive_raw(other_sig).reason == "bad_signature"


def test_min_next_bid() -> None:
    s = reference_scenario()
    view = s.ledger.auction(s.pic2)
    assert view.min_next_bid == Decimal(60) and view.to_json()["min_next_bid"] == "60"
    ledger = Ledger(NET)
    aid = accept(ledger, author(1).open(ledger, item="x", start_price=Decimal(5), min_increment=Decimal("0.5"),
                                        wall_ms=1)).id
    accept(ledger, author(2).bid(ledger, aid, Decimal(7), wall_ms=2))
    assert ledger.auction(aid).min_next_bid == Decimal("7.5")
    assert s.ledger.auction(s.pic1).to_json()["min_next_bid"] is None     # closed


def test_views_change_when_their_auction_changes() -> None:
    ledger = Ledger(NET)
    aid = accept(ledger, author(1).open(ledger, item="x", start_price=Decimal(5), wall_ms=1)).id
    other = accept(ledger, author(2).open(ledger, item="y", start_price=Decimal(5), wall_ms=1)).id
    first, other_view = ledger.auction(aid), ledger.auction(other)
    assert ledger.auction(aid) is first                     # unchanged: the same immutable view
    accept(ledger, author(2).bid(ledger, aid, Decimal(6), wall_ms=2))
    assert ledger.auction(aid).leading is not None and first.leading is None
    assert ledger.auction(other) is other_view
