"""Subscriptions are bounded: whatever the consumer does, memory stays bounded, order is kept,
and every lost notification is counted and reported."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.api import Feeds, Notification


def note(i: int, auction: str = "a") -> Notification:
    event: Any = SimpleNamespace(auction_id=auction, id=f"e{i}")
    return Notification(event=event, auction=SimpleNamespace(id=auction), own=False)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(maxsize=st.integers(1, 8), ops=st.lists(st.sampled_from(["push", "pop"]), max_size=60))
def test_bounded_queue_keeps_order_and_counts_losses(maxsize: int, ops: list[str]) -> None:
    feeds = Feeds()
    sub = feeds.subscribe(None, maxsize)
    pushed = 0
    got: list[Notification] = []
    for op in ops:
        if op == "push":
            feeds.publish(note(pushed))
            pushed += 1
        elif (n := sub.get_nowait()) is not None:
            got.append(n)
        assert len(sub._queue) <= maxsize
    got.extend(iter(sub.get_nowait, None))
    ids = [int(n.event.id[1:]) for n in got]
    assert ids == sorted(ids)                                 # order kept
    assert len(got) + sub.missed == pushed                    # nothing vanishes uncounted
    assert sum(n.missed for n in got) == sub.missed or (got == [] and pushed == 0)
    for n in got:                                             # a reported gap is a real gap
        if n.missed:
            prev = [int(g.event.id[1:]) for g in got if int(g.event.id[1:]) < int(n.event.id[1:])]
            assert int(n.event.id[1:]) - (max(prev) if prev else -1) - 1 == n.missed


def test_per_auction_subscription_filters_and_close_unregisters() -> None:
    feeds = Feeds()
    only_b = feeds.subscribe("b", 10)
    feeds.publish(note(0, "a"))
    feeds.publish(note(1, "b"))
    assert [n.auction_id for n in iter(only_b.get_nowait, None)] == ["b"]
    only_b.close()
    assert feeds.subscribers == 0
    feeds.publish(note(2, "b"))
    assert only_b.get_nowait() is None


def test_a_failing_listener_does_not_stop_the_others() -> None:
    feeds = Feeds()
    seen: list[str] = []

    def broken(n: Notification) -> None:
        raise RuntimeError("application bug")

    bad = feeds.add_listener(broken, None)
    feeds.add_listener(lambda n: seen.append(n.event.id), None)
    feeds.publish(note(0))
    assert seen == ["e0"] and bad.errors == 1
