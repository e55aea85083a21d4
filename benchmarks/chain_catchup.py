"""Catch-up of a long bid chain (issue 11): a fresh node and a returning node, simulated and real.

``python benchmarks/chain_catchup.py [--bids 10000] [--nodes 6] [--no-sim] [--no-real]`` prints,
for a fresh node (empty store, joins once the chain exists) and a returning node (down while the
bids were placed, then restarted):

- the time it took to hold the whole chain (open + every bid), from its start;
- the bytes it received per caught-up event (every frame type, handshake included);
- the duplicate event copies it received per caught-up event.

1. Simulator (virtual time, the real GossipCore): the ``chain-burst`` scenario (every bid at one
   instant) and the ``chain`` scenario (bids placed one by one over half the window), with a node
   joining and a node returning in the middle of it.
2. Real processes (``python -m p2pauction node`` on 127.0.0.1, port 0): a source node and one
   always-up peer; the chain, signed here, is pushed to the source by a hand-driven peer as EVENT
   frames (the source pushes them on to its peer, announcing instead over its push budget); then
   the returning node restarts and a fresh node starts, both knowing only the source's address.
   Times are wall-clock seconds on this machine; each node's catch-up counters are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulations.runner import SimConfig, Simulation, quiet_logs  # noqa: E402


def _per_event(stats: dict[str, Any], caught_up: int) -> tuple[float, float]:
    """(bytes, duplicates) received per caught-up event, from a core's stats."""
    n = max(1, caught_up)
    return stats["links"]["bytes_in"] / n, stats["events"]["duplicates"] / n


def _line(where: str, who: str, seconds: float | None, per_byte: float, per_dup: float, total: int, n: int) -> None:
    took = f"{seconds:7.2f} s" if seconds is not None else "   NEVER"
    print(f"{where:<24} {who:<10} holds {total:>6}/{n:<6} after {took}   "
          f"{per_byte:8.0f} bytes/event   {per_dup:6.3f} duplicates/event", flush=True)


# --- 1. simulator -------------------------------------------------------------------------------

def simulated(scenario: str, bids: int, nodes: int, seed: int) -> bool:
    sim = Simulation(SimConfig(seed=seed, nodes=nodes, scenario=scenario, events=bids, duration=30.0,
                               bound=120.0, trace=False))
    sim.build()
    w = sim.world
    want = bids + 1
    done: dict[str, tuple[float, float, float, int]] = {}

    def watch() -> None:
        returning = sim.honest[2]
        fresh = [n for n in w.nodes if n.role == "node" and n not in sim.honest]
        for who, node in (("returning", returning), *(("fresh", f) for f in fresh[:1])):
            if who in done or not node.alive or node.replica is None:
                continue
            held = len(node.replica.ledger)
            if held >= want:
                b, d = _per_event(node.core.stats(w.now), node.core.ev.accepted)
                done[who] = (w.now - node.started_at, b, d, held)
        if len(done) < 2:
            w.sched.at(w.now + 0.05, watch)

    w.sched.at(0.0, watch)
    t0 = time.process_time()
    with_stop = sim.heal + sim.cfg.bound
    w.sched.run_until(with_stop, stop=lambda: len(done) == 2)
    cpu = time.process_time() - t0
    ok = True
    for who in ("fresh", "returning"):
        if who in done:
            secs, b, d, held = done[who]
            _line(f"simulator {scenario}", who, secs, b, d, held, want)
        else:
            ok = False
            _line(f"simulator {scenario}", who, None, 0.0, 0.0, 0, want)
    print(f"    ({nodes} nodes, seed {seed}, {cpu:.0f} s CPU for the run)", flush=True)
    return ok


# --- 2. real processes ----------------------------------------------------------------------------

def sign_chain(net: str, bids: int) -> list[Any]:
    from p2pauction.state.events import BidBody, Kind, OpenBody, sign_event
    from p2pauction.state.identity import Identity

    seller, bidder = Identity.generate(), Identity.generate()
    now_ms = int(time.time() * 1000)
    opened = sign_event(seller, net=net, kind=Kind.OPEN, deps=(), lamport=1, ts=now_ms,
                        body=OpenBody(item="chain", currency="USDt", start_price=Decimal(1),
                                      min_increment=Decimal("0.01"), ends_at=None, name="seller"))
    events = [opened]
    for i in range(bids):
        prev = events[-1]
        events.append(sign_event(bidder, net=net, kind=Kind.BID, deps=(prev.id,), lamport=prev.lamport + 1,
                                 ts=now_ms + i, body=BidBody(opened.id, Decimal(2) + Decimal("0.01") * i, "bidder")))
    return events


async def hand_over(addr: str, net: str, events: list[Any]) -> None:
    """Push the whole chain to the node at ``addr`` as EVENT frames, as fast as it takes them
    (a ping after each 1,000 keeps within its 2,000 frames/s, burst 10,000, per-peer limit)."""
    from p2pauction.state.identity import Identity
    from tests.net_helpers import RawPeer

    peer = await RawPeer(Identity.generate(), net).connect(addr)
    try:
        if not await peer.handshake():
            raise SystemExit(f"handshake with the source failed: {peer.last_error}")
        for i in range(0, len(events), 1000):
            for e in events[i:i + 1000]:
                peer.send({"t": "event", "e": e.raw.decode(), "h": 0})
            await peer.drain()
            if not await peer.ping(n=i, timeout=120.0):  # it handled every frame before answering
                raise SystemExit(f"the source stopped answering: {peer.last_error}")
    finally:
        await peer.close()


def real(bids: int) -> bool:
    from tests.net_helpers import NodeProc, wait_for

    net = "chain-bench"
    want = bids + 1
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = NodeProc("source", work, net, [])
        source.start()
        procs = [source]
        try:
            source.wait_ready()
            peer = NodeProc("peer", work, net, [source.address])
            returning = NodeProc("returning", work, net, [source.address])
            procs += [peer, returning]
            peer.start()
            returning.start()
            peer.wait_ready()
            returning.wait_ready()
            wait_for(lambda: returning.status()["gossip"]["active"] >= 1, "the returning node connected")
            returning.stop()
            events = sign_chain(net, bids)
            t0 = time.monotonic()
            asyncio.run(hand_over(source.address, net, events))
            wait_for(lambda: source.status()["events"] >= want, "the source holds the chain", 300.0, 0.5)
            print(f"real processes: the source took the {bids}-bid chain in {time.monotonic() - t0:.1f} s",
                  flush=True)
            fresh = NodeProc("fresh", work, net, [source.address])
            starts = {"returning": time.monotonic()}
            returning.restart()
            starts["fresh"] = time.monotonic()
            fresh.start()
            procs.append(fresh)
            nodes = {"fresh": fresh, "returning": returning, "peer": peer}
            done: dict[str, tuple[float, dict[str, Any], int]] = {}
            deadline = time.monotonic() + 600.0
            while len(done) < 3 and time.monotonic() < deadline:
                for who, node in nodes.items():
                    if who in done or node.info() is None:
                        continue
                    try:
                        st = node.status()
                    except Exception:  # still starting: its control socket is not up yet
                        continue
                    if st["events"] >= want:
                        done[who] = (time.monotonic() - starts.get(who, t0), st["gossip"], st["events"])
                time.sleep(0.25)
            for who in ("fresh", "returning", "peer"):
                if who in done:
                    secs, gossip, held = done[who]
                    b, d = _per_event(gossip, gossip["events"]["accepted"])
                    label = "peer (up)" if who == "peer" else who
                    _line("real processes", label, secs, b, d, held, want)
                    ev = gossip["events"]
                    print("    " + ", ".join(f"{k}={ev[k]}" for k in (
                        "copies_received", "ae_events_received", "duplicates", "wanta_sent", "wanta_ids_sent",
                        "ae_rounds")) + f", grafts sent={gossip['plumtree']['graft_sent']}", flush=True)
                else:
                    ok = False
                    _line("real processes", who, None, 0.0, 0.0, 0, want)
            slow = {p.name: p.status()["transport"]["slow_peer_dropped"] for p in (source, peer)}
            alone = [p.name for p in (source, peer) if p.status()["gossip"]["active"] == 0]
            print(f"    peers dropped as slow (send queue full): {slow}; nodes left without peers: {alone or 'none'}",
                  flush=True)
            ok = ok and not alone and not any(slow.values())
        finally:
            for p in procs:
                p.stop()
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bids", type=int, default=10_000)
    ap.add_argument("--nodes", type=int, default=6, help="honest nodes in the simulator")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--no-real", action="store_true")
    args = ap.parse_args()
    quiet_logs()
    ok = True
    if not args.no_sim:
        for scenario in ("chain-burst", "chain"):
            ok = simulated(scenario, args.bids, args.nodes, args.seed) and ok
    if not args.no_real:
        ok = real(args.bids) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
