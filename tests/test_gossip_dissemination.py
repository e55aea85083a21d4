"""Plumtree decisions (pure): eager/lazy, PRUNE on duplicates, IHAVE timers and GRAFT, optimisation."""

from __future__ import annotations

import pytest

from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.dissemination import UNKNOWN_HOPS, Plumtree
from p2pauction.gossip.messages import EventMsg, Graft, IHave, Prune

ID1, ID2 = "1" * 64, "2" * 64


def tree(**overrides: object) -> Plumtree:
    p = Plumtree(GossipConfig(net="t", **overrides))  # type: ignore[arg-type]
    for key in ("a", "b", "c"):
        p.add_peer(key)
    return p


def test_new_event_goes_eager_to_all_but_sender_and_lazy_by_ihave() -> None:
    p = tree()
    p.on_prune("c")  # c is now lazy
    out = p.broadcast(ID1, "{}", hops=2, exclude="a", now=0.0)
    assert out == [("b", EventMsg(e="{}", h=3))]
    assert p.next_deadline() == 0.25
    flushed = p.tick(0.25, known=lambda i: True)
    assert flushed == [("c", IHave(ids=(ID1,), hs=(2,)))]
    assert p.next_deadline() == float("inf")


@pytest.mark.parametrize("one_way", [True, False])
def test_duplicate_prunes_sender_once(one_way: bool) -> None:
    """PRUNE asks the sender to stop pushing to us; one-way (the default), we keep pushing to it
    (it PRUNEs us if it does not need our copies); two-way, it becomes lazy here too."""
    p = tree(prune_one_way=one_way)
    assert p.on_duplicate("b") == [("b", Prune())]
    assert p.on_duplicate("b") == []
    assert ("b" in p.eager) is one_way and ("b" in p.lazy) is not one_way


def test_no_prune_of_a_peer_that_gave_a_first_copy_within_prune_protect() -> None:
    p = tree()
    p.on_new_event(ID1, "b", now=10.0)
    assert p.on_duplicate("b", now=10.2) == []          # within 0.3 s: it is a parent of ours
    assert p.on_duplicate("b", now=10.3) == [("b", Prune())]


def test_ihave_of_unknown_id_grafts_after_timeout_then_tries_next_announcer() -> None:
    p = tree()
    p.on_prune("b")
    p.on_prune("c")
    p.on_ihave("b", (ID1,), (), known=lambda i: False, now=0.0)
    p.on_ihave("c", (ID1,), (), known=lambda i: False, now=0.1)
    assert p.tick(0.9, known=lambda i: False) == []
    assert p.tick(1.0, known=lambda i: False) == [("b", Graft(ids=(ID1,)))]
    assert "b" in p.eager
    assert p.tick(1.5, known=lambda i: False) == [("c", Graft(ids=(ID1,)))]
    assert p.tick(5.0, known=lambda i: False) == []


def test_ihave_timer_cancelled_when_event_arrives() -> None:
    p = tree()
    p.on_prune("b")
    p.on_ihave("b", (ID1,), (), known=lambda i: False, now=0.0)
    p.on_new_event(ID1, "a")
    assert p.tick(2.0, known=lambda i: False) == []


def test_announced_event_that_came_by_another_route_still_repairs_the_tree() -> None:
    """No push reached us, anti-entropy brought the event: when the GRAFT timer fires, the
    announcer is GRAFTed with no ids ("push to me"), or the node stays cut off the tree and
    every later event reaches it late, by anti-entropy, without the tree ever being repaired."""
    p = tree(tree_repair=True)
    p.on_ihave("b", (ID1,), (), known=lambda i: False, now=0.0)
    p.on_new_event(ID1, None, now=0.4)                  # repaired by anti-entropy, not pushed
    assert p.tick(1.0, known=lambda i: True) == [("b", Graft(ids=()))]
    assert p.counters.tree_repairs == 1
    assert p.tick(5.0, known=lambda i: True) == []
    off = tree()                                        # tree_repair off (the default today)
    off.on_ihave("b", (ID1,), (), known=lambda i: False, now=0.0)
    off.on_new_event(ID1, None, now=0.4)
    assert off.tick(1.0, known=lambda i: True) == []


def test_an_event_pushed_after_its_announcement_needs_no_repair() -> None:
    p = tree(tree_repair=True)
    p.on_ihave("b", (ID1,), (), known=lambda i: False, now=0.0)
    p.on_new_event(ID1, "a", now=0.4)
    assert p.tick(1.0, known=lambda i: True) == []
    assert p.counters.tree_repairs == 0


def test_losing_the_latest_parent_grafts_another_peer_at_once() -> None:
    """tree_repair: the link of the peer that pushed us the latest first copy went down; new links
    start lazy on both sides, so nothing may push to us any more: GRAFT ("push to me") the peer
    with the next most recent first copy (else a lazy one) now, not after an IHAVE and 1 s."""
    p = tree(tree_repair=True)
    p.on_new_event(ID1, "b", now=1.0)
    p.on_new_event(ID2, "c", now=2.0)
    p.remove_peer("a", now=2.5)                         # not our latest parent: nothing to do
    assert p.tick(2.5, known=lambda i: True) == []
    p.remove_peer("c", now=3.0)
    assert p.next_deadline() == 3.0
    assert p.tick(3.0, known=lambda i: True) == [("b", Graft(ids=()))]
    assert p.counters.tree_repairs == 1
    off = tree()
    off.on_new_event(ID1, "b", now=1.0)
    off.remove_peer("b", now=3.0)
    assert off.tick(3.0, known=lambda i: True) == []


def test_first_pusher_of_a_recent_source_is_not_pruned() -> None:
    """With source_parents=N, a peer that pushed us the first copy of one of the last N sources'
    latest event is our parent towards that source: a duplicate from it later is not PRUNEd
    (without this, nodes prune every pusher but about one and small groups end up pushing only
    to each other). Once N newer sources have other parents, it may be pruned again."""
    p = tree(source_parents=2)
    p.on_new_event(ID1, "b", now=0.0, source="S1")
    assert p.on_duplicate("b", now=5.0) == []          # long after prune_protect: still a parent
    p.on_new_event(ID2, "c", now=6.0, source="S2")
    p.on_new_event("3" * 64, "c", now=7.0, source="S3")  # S1 is now the third-latest source
    assert p.on_duplicate("b", now=9.0) == [("b", Prune())]
    off = tree()
    off.on_new_event(ID1, "b", now=0.0, source="S1")
    assert off.on_duplicate("b", now=5.0) == [("b", Prune())]


def test_a_parent_that_leaves_protects_nothing() -> None:
    p = tree(source_parents=4)
    p.on_new_event(ID1, "b", now=0.0, source="S1")
    p.remove_peer("b")
    p.add_peer("b")
    assert p.on_duplicate("b", now=5.0) == [("b", Prune())]


def test_graft_makes_sender_eager_and_returns_ids() -> None:
    p = tree()
    p.on_prune("b")
    assert p.on_graft("b", (ID1, ID2)) == [ID1, ID2]
    assert "b" in p.eager


def test_optimisation_reroutes_through_a_shorter_path() -> None:
    p = tree(optimize_threshold=2, optimize_samples=1, prune_one_way=False)
    p.on_prune("c")
    p.broadcast(ID1, "{}", hops=9, exclude="a", now=0.0)  # our copy came from a after 9 hops
    out = p.on_ihave("c", (ID1,), (3,), known=lambda i: True, now=0.5)
    assert out == [("c", Graft(ids=())), ("a", Prune())]
    assert "c" in p.eager and "a" in p.lazy
    assert p.counters.optimized == 1


def test_no_optimisation_for_small_gains_or_unknown_hops() -> None:
    p = tree(optimize_threshold=2, optimize_samples=1)
    p.on_prune("c")
    p.broadcast(ID1, "{}", hops=5, exclude="a", now=0.0)
    assert p.on_ihave("c", (ID1,), (3,), known=lambda i: True, now=0.5) == []  # 3+1+2 > 5
    assert p.on_ihave("c", (ID1,), (UNKNOWN_HOPS,), known=lambda i: True, now=0.5) == []


def test_flood_mode_pushes_to_every_peer_and_never_prunes() -> None:
    p = tree(dissemination="flood")
    p.on_prune("c")
    out = p.broadcast(ID1, "{}", hops=0, exclude="a", now=0.0)
    assert sorted(k for k, _ in out) == ["b", "c"]
    assert p.on_duplicate("b") == []


def test_none_mode_sends_nothing() -> None:
    p = tree(dissemination="none")
    assert p.broadcast(ID1, "{}", hops=0, exclude=None, now=0.0) == []
    p.announce(ID1, None, 0.0)
    assert p.tick(10.0, known=lambda i: True) == []


def test_queues_and_missing_table_are_bounded() -> None:
    p = tree(ihave_queue_max=3, missing_max=2)
    p.on_prune("c")
    for i in range(10):
        p.broadcast(f"{i:064x}", "{}", hops=0, exclude=None, now=0.0)
    assert p.counters.ihave_dropped == 7
    p.on_ihave("b", tuple(f"{i:064x}" for i in range(5)), (), known=lambda i: False, now=0.0)
    assert p.counters.missing_dropped == 3
