"""Many seeds of the acceptance scenario: ``python -m simulations.seeds --count 1000 --nodes 200``.

Each seed runs the issue's fault mix -- 10% frame loss, a symmetric partition that forms and
heals, 5% of the nodes crashing and restarting, hostile authors -- and must keep every safety
invariant and converge within the bound. One line per seed goes to ``--out`` (JSON lines); the
final line counts failures and lists the seeds that replay them. ``--jobs`` runs seeds in worker
processes (each run is single-threaded and deterministic on its own).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from simulations.faults import FaultOptions
from simulations.network import NetParams
from simulations.runner import SimConfig, Simulation, quiet_logs


def acceptance_config(seed: int, nodes: int, events: int, *, loss: float = 0.10, crash: float = 0.05,
                      hostile: int = 2, bound: float = 120.0, storage: float = 0.0) -> SimConfig:
    """The issue's acceptance mix for one seed (shared with tests/test_sim_acceptance.py);
    ``storage``: share of store commits failing (disk full / I/O error) in the fault window."""
    return SimConfig(
        seed=seed, nodes=nodes, scenario="random", events=events, duration=30.0,
        net=NetParams(latency=(0.010, 0.060), jitter=0.005, loss=loss),
        faults=FaultOptions(partitions=[("symmetric", 6.0, 16.0, 0.5)], crash_fraction=crash,
                            crash_window=(2.0, 24.0), crash_down=(2.0, 10.0),
                            hostile_nodes=hostile, hostile_acts=6, hostile_window=(8.0, 28.0), skew_ms=2000,
                            storage_faults=storage, storage_window=(2.0, 24.0) if storage else (0.0, 0.0)),
        bound=bound, trace=False,
        replay=f"run --seed {seed} --nodes {nodes} --events {events} --duration 30 --loss {loss} "
               f"--latency 10-60 --partition symmetric:6-16 --crash {crash} --down 2-10 "
               f"--hostile {hostile}:6 --skew 2000 --bound {bound:g}"
               + (f" --storage-faults {storage:g} --storage-window 2-24" if storage else "")
               + "  (crash/hostile windows: seeds.py)",
    )


def one(seed: int, nodes: int, events: int, bound: float, storage: float = 0.0) -> dict[str, Any]:
    quiet_logs()
    sim = Simulation(acceptance_config(seed, nodes, events, bound=bound, storage=storage))
    s = sim.run()
    return {"seed": seed, "ok": s["ok"], "converged_after_heal": s["converged_after_heal"],
            "violations": s["violations"], "frames_delivered": s["frames_delivered"],
            "copies_per_delivered_event": s["copies_per_delivered_event"], "wall": s["wall_seconds"],
            "deliveries_per_wall_second": s["deliveries_per_wall_second"],
            "first_violation": s["checker"]["violations"][:1],
            "storage_faults": s["world"].get("storage_faults", 0),
            "acknowledged": s["checker"].get("acknowledged", 0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulations.seeds", description=__doc__)
    p.add_argument("--start", type=int, default=1)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--bound", type=float, default=120.0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("seeds.jsonl"))
    p.add_argument("--budget", type=float, default=0.0, help="stop starting new seeds after this many wall seconds")
    p.add_argument("--storage-faults", type=float, default=0.0, metavar="P",
                   help="also fail this share of honest store commits (disk full / I/O error), 2-24 s in")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    seeds = range(a.start, a.start + a.count)
    failed: list[int] = []
    done = 0
    worst = 0.0
    with a.out.open("w") as fh:
        if a.jobs <= 1:
            results = (one(s, a.nodes, a.events, a.bound, a.storage_faults) for s in seeds
                       if not a.budget or time.perf_counter() - t0 < a.budget)
            for r in results:
                done += 1
                worst = _record(fh, r, failed, worst)
        else:
            with ProcessPoolExecutor(a.jobs) as ex:
                futs = [ex.submit(one, s, a.nodes, a.events, a.bound, a.storage_faults) for s in seeds]
                for f in futs:
                    done += 1
                    worst = _record(fh, f.result(), failed, worst)
    wall = time.perf_counter() - t0
    print(f"seeds {a.start}..{a.start + done - 1}: {done} runs of {a.nodes} nodes, {done - len(failed)} ok, "
          f"{len(failed)} failed {failed[:20]}; slowest convergence {worst:.1f}s after heal "
          f"(bound {a.bound:.0f}s); {wall:.0f}s wall")
    return 1 if failed else 0


def _record(fh: Any, r: dict[str, Any], failed: list[int], worst: float) -> float:
    fh.write(json.dumps(r, sort_keys=True) + "\n")
    fh.flush()
    if not r["ok"]:
        failed.append(r["seed"])
        print(f"seed {r['seed']} FAILED: {r['violations']} {r['first_violation']}", file=sys.stderr, flush=True)
    c = r["converged_after_heal"]
    return max(worst, c) if c is not None else worst


if __name__ == "__main__":
    sys.exit(main())
