"""Simulator speed: simulated frame deliveries per second, and where the time per delivery goes.

``python benchmarks/simulator.py [--quick]`` measures, in one run and on the same machine:

1. **Engine floor**: the simulator's own machinery (event queue, in-memory network with latency
   and jitter, framing, the driver loop) carrying frames between trivial "hot potato" nodes that
   only split each frame and pass it on to a random neighbour. No protocol, no state: the most
   deliveries per second this engine can give on this machine.
2. **Real nodes**: the same engine driving the project's GossipCore over a Replica (random
   workload), with the run-wide shared caches (signatures, event decoding, EVENT frame parsing)
   and without them.

It prints each rate, the ratios between them, and the time per delivery split into "engine" (the
floor's cost) and "node code" (the rest), next to the 10 microseconds per delivery that the
100,000 deliveries per second target allows. Absolute rates drift with the machine's load; the
ratios and the split are what to compare between runs.

Before/after a change: ``--against DIR`` measures this checkout's simulator and the one in the
checkout DIR (e.g. a ``git worktree`` of main) in the same run, alternating fresh processes
``--repeat`` times, and prints this/DIR ratios of deliveries per CPU second (engine floor and real
nodes; the simulated runs must give the same number of deliveries, or the comparison says so).
``--root DIR`` runs the measurement on the simulator of DIR (what ``--against`` does in each child).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def _root() -> Path:
    """The checkout whose simulator is measured: this one, or ``--root DIR`` (read before the
    imports below, which must come from that checkout)."""
    if "--root" in sys.argv[:-1]:
        return Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
    return HERE


sys.path.insert(0, str(_root()))

from p2pauction.errors import FrameError  # noqa: E402
from p2pauction.gossip.actions import Dial, Send  # noqa: E402
from p2pauction.gossip.framing import FrameDecoder  # noqa: E402
from simulations.engine import World  # noqa: E402
from simulations.network import NetParams  # noqa: E402
from simulations.runner import SimConfig, Simulation, quiet_logs  # noqa: E402
from simulations.standin import StandinFactory  # noqa: E402

TARGET_PER_SECOND = 100_000
POTATO_BODY = 380  # about the size of an EVENT frame's body


class PotatoCore:
    """Passes every frame it receives to one random neighbour until its hop budget runs out."""

    def __init__(self, addr: str, known: list[str], rng: Any, degree: int) -> None:
        self.rng = rng
        self.conns: dict[int, FrameDecoder] = {}
        self.order: list[int] = []
        self.actions: list[Any] = [Dial(a) for a in rng.sample([k for k in known if k != addr], degree)]

    def connection_made(self, conn: int, *, outbound: bool, remote_addr: str, now: float) -> None:
        self.conns[conn] = FrameDecoder()
        self.order.append(conn)

    def connection_lost(self, conn: int, now: float) -> None:
        self.conns.pop(conn, None)
        self.order.remove(conn)

    def dial_failed(self, addr: str, now: float) -> None:
        pass

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        try:
            bodies = self.conns[conn].split(data)
        except FrameError:
            return
        for body in bodies:
            if body[0] > 0 and self.order:
                self.send(bytes([body[0] - 1]) + body[1:])

    def send(self, body: bytes) -> None:
        conn = self.order[self.rng.randrange(len(self.order))]
        self.actions.append(Send(conn, len(body).to_bytes(4, "big") + body))

    def tick(self, now: float) -> None:
        pass

    def next_deadline(self) -> float:
        return float("inf")

    def take_actions(self) -> list[Any]:
        out, self.actions = self.actions, []
        return out


class PotatoFactory(StandinFactory):
    """The stand-in node's factory with hot-potato cores (its store and replica go unused)."""

    net = "potato"

    def new_core(self, node: Any, now: float) -> PotatoCore:  # type: ignore[override]
        known = [n.addr for n in self.world.nodes]
        return PotatoCore(node.addr, known, node.rng, self.degree)


def engine_floor(n: int, potatoes: int, hops: int) -> dict[str, Any]:
    w = World(seed=1, factory=PotatoFactory(), net_params=NetParams(), trace=True)
    for _ in range(n):
        w.add_node()
    for node in w.nodes:
        w.start(node)
    w.sched.run_until(1.0)  # connections up
    body = bytes([min(hops, 255)]) + b"x" * (POTATO_BODY - 1)
    for i in range(potatoes):
        node = w.nodes[i % n]
        node.core.send(body)
        w._drain(node)
    stats = w.net.stats
    before = stats.frames_delivered
    t0, c0 = time.perf_counter(), time.process_time()
    w.sched.run_until(float("inf"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    delivered = stats.frames_delivered - before
    return {"nodes": n, "deliveries": delivered, "wall": round(wall, 2), "cpu": round(cpu, 2),
            "per_cpu_second": round(delivered / cpu)}


def real_nodes(n: int, events: int, caches: bool) -> dict[str, Any]:
    size = 1 << 17 if caches else 0
    cfg = SimConfig(seed=1, nodes=n, scenario="random", events=events,
                    verifier_cache=size, decode_cache=size)
    s = Simulation(cfg).run()
    return {"nodes": n, "events": events, "shared_caches": caches, "ok": s["ok"],
            "deliveries": s["frames_delivered"], "wall": s["wall_seconds"], "cpu": s["cpu_seconds"],
            "per_cpu_second": s["deliveries_per_cpu_second"], "peak_rss_mb": s["peak_rss_mb"]}


def measure(quick: bool, with_bare: bool = True) -> dict[str, Any]:
    n, events = (60, 200) if quick else (200, 1000)
    floor = engine_floor(n, potatoes=n * 4, hops=100 if quick else 300)
    real = real_nodes(n, events, caches=True)
    floor_us = 1e6 / floor["per_cpu_second"]
    real_us = 1e6 / real["per_cpu_second"]
    result: dict[str, Any] = {
        "engine_floor": floor, "real_nodes": real,
        "ratio_real_to_floor": round(real["per_cpu_second"] / floor["per_cpu_second"], 3),
        "microseconds_per_delivery": {"engine": round(floor_us, 1), "node_code": round(real_us - floor_us, 1),
                                      "total": round(real_us, 1), "target_budget": 1e6 / TARGET_PER_SECOND},
    }
    if with_bare:
        bare = real_nodes(n, events, caches=False)
        result["real_nodes_without_shared_caches"] = bare
        result["ratio_caches_on_to_off"] = round(real["per_cpu_second"] / bare["per_cpu_second"], 2)
    return result


def compare(against: Path, quick: bool, repeat: int) -> dict[str, Any]:
    """This checkout against ``against``, alternating child processes; ratios this/against."""
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "against": []}
    for _ in range(repeat):
        for label, root in (("this", HERE), ("against", against.resolve())):
            argv = [sys.executable, __file__, "--json", "--no-bare", "--root", str(root)] + (["--quick"] if quick else [])
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            runs[label].append(json.loads(done.stdout))
    out: dict[str, Any] = {"against": str(against), "repeat": repeat}
    for part in ("engine_floor", "real_nodes"):
        mine = [r[part]["per_cpu_second"] for r in runs["this"]]
        theirs = [r[part]["per_cpu_second"] for r in runs["against"]]
        same = {r[part]["deliveries"] for r in runs["this"]} == {r[part]["deliveries"] for r in runs["against"]}
        out[part] = {"this_per_cpu_second": mine, "against_per_cpu_second": theirs,
                     "ratio_median": round(statistics.median(m / t for m, t in zip(mine, theirs)), 3),
                     "same_deliveries": same}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-bare", action="store_true", help="skip the run without shared caches")
    ap.add_argument("--root", type=Path, help="measure the simulator of this checkout instead")
    ap.add_argument("--against", type=Path, metavar="DIR", help="compare with the simulator of checkout DIR")
    ap.add_argument("--repeat", type=int, default=3, help="with --against: alternating runs of each")
    args = ap.parse_args()
    quiet_logs()
    if args.against is not None:
        cmp = compare(args.against, args.quick, args.repeat)
        if args.json:
            print(json.dumps(cmp, indent=2))
            return
        for part in ("engine_floor", "real_nodes"):
            c = cmp[part]
            print(f"{part}: this/against = {c['ratio_median']:.3f} (median of {args.repeat}; "
                  f"this {c['this_per_cpu_second']}, against {c['against_per_cpu_second']} deliveries per CPU second"
                  f"{'' if c['same_deliveries'] else '; DIFFERENT delivery counts: not the same runs'})")
        return
    result = measure(args.quick, with_bare=not args.no_bare)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    floor, real = result["engine_floor"], result["real_nodes"]
    us = result["microseconds_per_delivery"]
    print(f"engine floor ({floor['nodes']} hot-potato nodes): {floor['per_cpu_second']:,} deliveries per CPU second")
    print(f"real nodes   ({real['nodes']} nodes, {real['events']} events, shared caches): "
          f"{real['per_cpu_second']:,} per CPU second = {result['ratio_real_to_floor']:.3f} x floor")
    if "real_nodes_without_shared_caches" in result:
        bare = result["real_nodes_without_shared_caches"]
        print(f"real nodes without shared caches: {bare['per_cpu_second']:,} per CPU second; "
              f"caches give {result['ratio_caches_on_to_off']:.2f} x")
    print(f"time per delivery: engine {us['engine']:.1f} us + node code {us['node_code']:.1f} us "
          f"= {us['total']:.1f} us (the {TARGET_PER_SECOND:,}/s target allows {us['target_budget']:.0f} us)")


if __name__ == "__main__":
    main()
