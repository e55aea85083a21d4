"""The simulator's own machinery (clock, network, partitions, crash/restart), on the stand-in node.

These are unit tests of the engine; the acceptance tests (test_sim_acceptance.py) drive the
real GossipCore and Replica.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from p2pauction.gossip.framing import encode_frame
from simulations.engine import Scheduler, World
from simulations.network import NetParams, Partition, frame_spans
from simulations.standin import StandinFactory


def _world(seed: int, n: int = 12, **net: Any) -> tuple[World, StandinFactory]:
    f = StandinFactory()
    w = World(seed=seed, factory=f, net_params=NetParams(**net))
    for _ in range(n):
        w.add_node()
    for node in w.nodes:
        w.start(node)
    return w, f


def _publish_many(w: World, f: StandinFactory, k: int, t0: float = 1.0) -> None:
    for i in range(k):
        node = w.nodes[i % len(w.nodes)]
        w.sched.at(t0 + 0.05 * i, lambda node=node, i=i: node.alive and w.publish(node, f.make_event(node, i)))


def test_scheduler_runs_in_time_then_insertion_order() -> None:
    s = Scheduler()
    seen: list[str] = []
    s.at(2.0, seen.append, "c")
    s.at(1.0, seen.append, "a")
    s.at(1.0, seen.append, "b")
    s.run_until(1.5)
    assert seen == ["a", "b"] and s.now == 1.5
    s.run_until(10.0)
    assert seen == ["a", "b", "c"]


def test_scheduler_halt_ends_the_run_after_the_current_callback() -> None:
    s = Scheduler()
    seen: list[str] = []
    s.at(1.0, seen.append, "a")
    s.at(2.0, lambda: (seen.append("b"), s.halt()))
    s.at(2.0, seen.append, "c")
    s.run_until(10.0)
    assert seen == ["a", "b"] and s.now == 2.0 and s.steps == 2
    s.run_until(10.0)  # the halt is spent: the next run goes on
    assert seen == ["a", "b", "c"] and s.now == 10.0 and s.steps == 3


def test_scheduler_stop_predicate_still_ends_a_run() -> None:
    s = Scheduler()
    seen: list[int] = []
    for i in range(5):
        s.at(float(i), seen.append, i)
    s.run_until(10.0, stop=lambda: len(seen) == 2)
    assert seen == [0, 1] and s.now == 1.0


def test_a_link_delivers_in_send_order_whatever_the_jitter() -> None:
    w, _ = _world(3, n=2, jitter=0.05)
    w.sched.run_until(5.0)  # connected
    a, b = w.nodes
    cid = next(c for c, ep in a.eps.items() if ep.made and ep.peer is not None and ep.peer.node is b)
    got: list[bytes] = []
    w.net.on_frames = lambda ep, data: got.extend(frame_spans(data)) if ep.node is b else None
    frames = [encode_frame({"t": "noop", "i": i}) for i in range(200)]  # frames the stand-in ignores
    for i, frame in enumerate(frames):
        w.sched.at(5.0 + i * 0.001, w.net.send, a, cid, frame)
    w.sched.run_until(10.0)
    assert [f for f in got if f in frames] == frames


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8))
def test_frame_spans_split_whole_frames(bodies: list[bytes]) -> None:
    data = b"".join(len(b).to_bytes(4, "big") + b for b in bodies)
    assert frame_spans(data) == [len(b).to_bytes(4, "big") + b for b in bodies]
    assert b"".join(frame_spans(data + b"\x00\x00")) == data + b"\x00\x00"


def test_standin_network_converges_and_counts() -> None:
    w, f = _world(1)
    _publish_many(w, f, 30)
    w.sched.run_until(30.0)
    d = w.digests()
    assert len(d) == 1 and sum(d.values()) == 12
    assert w.nodes[0].replica.ledger.__len__() == 30
    assert w.net.stats.frames_delivered > 0 and w.counters.accepted == 30 * 12


def test_same_seed_same_trace_and_different_seed_differs() -> None:
    hashes = []
    for seed in (5, 5, 6):
        w, f = _world(seed, loss=0.1, dup=0.05, reorder=0.1)
        _publish_many(w, f, 20)
        w.sched.run_until(20.0)
        hashes.append(w.trace_hash())
    assert hashes[0] == hashes[1] != hashes[2]


def test_partition_blocks_then_heals() -> None:
    w, f = _world(2, n=10)
    w.sched.run_until(5.0)  # overlay formed
    part = Partition({n.idx: n.idx % 2 for n in w.nodes}, frozenset({(0, 0), (1, 1)}))
    w.net.partition = part
    node0 = w.nodes[0]
    w.publish(node0, f.make_event(node0, 0))
    w.sched.run_until(15.0)
    odd = [n for n in w.nodes if n.idx % 2 == 1]
    assert all(len(n.replica.ledger) == 0 for n in odd), "an event crossed the partition"
    assert w.net.stats.dropped_partition > 0
    w.net.partition = None
    w.sched.run_until(60.0)
    assert len(w.digests()) == 1


def test_asymmetric_partition_lets_one_direction_through() -> None:
    part = Partition({1: 1}, frozenset({(0, 0), (1, 1), (0, 1)}))
    assert not part.blocks(0, 1) and part.blocks(1, 0)


def test_crash_keeps_store_and_restart_rebuilds() -> None:
    w, f = _world(3, n=6)
    _publish_many(w, f, 10)
    w.sched.run_until(10.0)
    victim = w.nodes[2]
    before = victim.replica.ledger.digest_hex
    w.crash(victim)
    assert victim.core is None and not victim.eps
    assert all(ep.node is not victim for ep in w.net.endpoints.values())
    w.start(victim)
    assert victim.replica.ledger.digest_hex == before
    w.sched.run_until(30.0)
    assert len(w.digests()) == 1


def test_loss_is_repaired_by_anti_entropy() -> None:
    w, f = _world(4, n=10, loss=0.3)
    _publish_many(w, f, 20)
    w.sched.run_until(60.0)
    assert w.net.stats.dropped_loss > 0
    assert len(w.digests()) == 1


def test_close_delivers_in_flight_data_before_fin() -> None:
    w, f = _world(7, n=2)
    w.sched.run_until(3.0)
    a = w.nodes[0]
    assert a.eps, "the two nodes should be connected"
    cid = sorted(a.eps)[0]
    peer = a.eps[cid].peer
    assert peer is not None
    got: list[str] = []
    core = peer.node.core
    orig_data, orig_lost = core.data_received, core.connection_lost

    def data_received(c: int, d: bytes, now: float) -> None:
        got.append("data")
        orig_data(c, d, now)

    def connection_lost(c: int, now: float) -> None:
        got.append("fin")
        orig_lost(c, now)

    core.data_received = data_received
    core.connection_lost = connection_lost
    w.net.send(a, cid, (3).to_bytes(4, "big") + b"abc")
    w.net.close(a, cid, "test")
    w.sched.run_until(5.0)
    assert got[:2] == ["data", "fin"]
