"""Anti-entropy summary and reconciliation steps, without the network (pure logic)."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.gossip import antientropy as ae
from p2pauction.gossip.framing import encode_frame
from p2pauction.gossip.messages import Ids, Message, Sync, Tree, Want, WantPrefix, parse_message


def make_ids(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def summary_of(ids: list[str], depth: int = 4) -> ae.PrefixSummary:
    s = ae.PrefixSummary(depth)
    for i in ids:
        s.add(i)
    return s


def reconcile(a: ae.PrefixSummary, b: ae.PrefixSummary, max_rounds: int = 50,
              ids_max: int = 0, messages: list[str] | None = None) -> tuple[int, int, int]:
    """Run rounds A->B until both summaries agree. Returns (rounds, protocol bytes, ids moved).

    Every message goes through its wire form, as on a real link; ``messages`` collects their types."""
    total = moved = 0
    for rnd in range(1, max_rounds + 1):
        queue: list[tuple[ae.PrefixSummary, ae.PrefixSummary, Message]] = [(a, b, Sync(r=a.root()))]
        while queue:
            src, dst, msg = queue.pop(0)
            frame = encode_frame(msg.to_wire())
            total += len(frame)
            msg = parse_message(msg.to_wire())
            if messages is not None:
                messages.append(msg.T)
            if isinstance(msg, Sync):
                plan = ae.on_sync(dst, msg.r)
            elif isinstance(msg, Tree):
                plan = ae.on_tree(dst, msg.nodes, expand_max=256, serve_max=512, ids_max=ids_max)
            elif isinstance(msg, Ids):
                plan = ae.on_ids(dst, msg.leaves, serve_max=512)
            elif isinstance(msg, WantPrefix):
                plan = ae.on_wantp(dst, msg.prefixes, serve_max=512)
            elif isinstance(msg, Want):
                plan = ae.Plan(serve=list(msg.ids))
            else:
                raise AssertionError(msg)
            queue.extend((dst, src, r) for r in plan.replies)
            for event_id in dst.in_store_order(plan.serve):
                moved += src.add(event_id)
        if a.root() == b.root():
            return rnd, total, moved
    raise AssertionError("did not converge")


def test_root_is_fixed_width_and_incremental() -> None:
    ids = make_ids(300)
    s = summary_of(ids)
    t = summary_of(list(reversed(ids)))
    assert s.root() == t.root() and len(s.root()) == 24
    assert not s.add(ids[0])
    assert s.bucket("") == (int(s.root()[:16], 16), 300)


def test_buckets_match_recomputation() -> None:
    ids = make_ids(2000)
    s = summary_of(ids)
    for prefix in ["a", "3f", "c0d", "beef", "0"]:
        members = [i for i in ids if i.startswith(prefix)]
        fp = sum(int(i[48:], 16) for i in members) % 2**64
        assert s.bucket(prefix) == (fp, len(members))
        node = s.node(prefix) if len(prefix) < 4 else None
        if node is not None:
            assert sum(node.counts) == len(members)


def test_agreeing_round_is_constant_bytes() -> None:
    small = summary_of(make_ids(1000))
    big = summary_of(make_ids(10_000))
    r1, b1, _ = reconcile(small, summary_of(make_ids(1000)))
    r2, b2, _ = reconcile(big, summary_of(make_ids(10_000)))
    assert (r1, r2) == (1, 1)
    assert b1 == b2 < 64


def test_cost_grows_with_difference_not_history() -> None:
    costs = {}
    for n in (1000, 20_000):
        base = make_ids(n)
        extra = make_ids(5, salt="extra")
        _, cost, moved = reconcile(summary_of(base + extra), summary_of(base))
        assert moved == 5
        costs[n] = cost
    # A 20x bigger history costs at most a little more (one more tree level is possible).
    assert costs[20_000] < 2 * costs[1000]


def test_small_buckets_are_answered_with_their_ids() -> None:
    # 1,000 ids: about 4 per depth-2 bucket. A few differences are settled one tree level higher
    # with the shortcut: fewer messages in the chain (each one a round trip), for a few more bytes
    # at most (an id list instead of the cheaper "whole bucket" request at the bottom).
    base = make_ids(1000)
    extra = make_ids(6, salt="extra")
    walked: list[str] = []
    short: list[str] = []
    _, cost_walk, moved_walk = reconcile(summary_of(base + extra), summary_of(base), messages=walked)
    _, cost_short, moved_short = reconcile(summary_of(base + extra), summary_of(base), ids_max=8,
                                           messages=short)
    assert moved_walk == moved_short == 6
    assert len(short) < len(walked) and short.count("tree") < walked.count("tree")
    assert cost_short < 1.5 * cost_walk


def test_empty_side_catches_up_in_bounded_rounds() -> None:
    full = summary_of(make_ids(3000))
    empty = ae.PrefixSummary()
    rounds, _, moved = reconcile(full, empty)
    assert moved == 3000 and rounds <= 12


@given(st.sets(st.integers(0, 400), max_size=120), st.sets(st.integers(0, 400), max_size=120),
       st.integers(1, 4), st.sampled_from([0, 1, 8, 64]))
@settings(max_examples=80, deadline=None)
def test_reconcile_reaches_the_union(xs: set[int], ys: set[int], depth: int, ids_max: int) -> None:
    pool = make_ids(401)
    a = summary_of([pool[i] for i in sorted(xs)], depth)
    b = summary_of([pool[i] for i in sorted(ys)], depth)
    reconcile(a, b, ids_max=ids_max)
    union = sorted(pool[i] for i in xs | ys)
    assert a.ids_in("") == b.ids_in("") == union


def test_store_order_is_acceptance_order() -> None:
    ids = make_ids(50)
    random.Random(4).shuffle(ids)
    s = summary_of(ids)
    assert s.in_store_order(sorted(ids)) == ids


def test_bulk_load_equals_incremental_adds() -> None:
    ids = make_ids(500)
    bulk = ae.PrefixSummary()
    assert bulk.add_many(ids + ids[:10]) == 500
    one = summary_of(ids)
    assert bulk.root() == one.root() and bulk.ids_in("") == one.ids_in("") == sorted(ids)
    assert bulk.in_store_order(sorted(ids)) == ids
    assert bulk.node("a") == one.node("a") and bulk.node("abc") == one.node("abc")


def test_messages_stay_under_the_frame_limit_with_shallow_trees() -> None:
    a = summary_of(make_ids(40_000), depth=1)
    b = summary_of(make_ids(40_000, salt="other"), depth=1)
    plan = ae.on_tree(b, [a.node("")], expand_max=256, serve_max=512)
    assert plan.replies
    for reply in plan.replies:
        assert len(encode_frame(reply.to_wire())) < 2**20

