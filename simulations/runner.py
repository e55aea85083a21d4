"""One simulation run: build the world, schedule workload and faults, run, check, summarise.

Timeline (virtual seconds): the bootstrap starts at 0 and the nodes join over ``join_spread``;
the workload starts at ``warmup`` and lasts ``workload.duration``; faults happen inside that
window; ``heal`` is when the workload is over and the last fault healed. From then on a probe
compares the honest live nodes' digests every ``probe`` seconds; the run stops at the first
agreement (liveness holds, ``converged_after`` = time since heal) or at ``heal + bound``
(a ``liveness`` violation).
"""

from __future__ import annotations

import gc
import math
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from simulations import faults as faults_mod
from simulations.checker import Checker
from simulations.engine import World
from simulations.faults import FaultOptions, FaultPlan
from simulations.hostile import Hostile
from simulations.network import NetParams
from simulations.process import SimNode
from simulations.workloads import Workload, make as make_workload


@dataclass
class SimConfig:
    seed: int | str = 1
    nodes: int = 30
    scenario: str = "random"
    events: int = 200
    duration: float | None = None          # workload window; default per scenario
    net: NetParams = field(default_factory=NetParams)
    faults: FaultOptions | FaultPlan = field(default_factory=FaultOptions)
    bound: float = 120.0                   # liveness bound after heal, virtual seconds
    probe: float = 0.5
    warmup: float | None = None
    join_spread: float | None = None
    dissemination: str = "plumtree"
    core_overrides: dict[str, Any] = field(default_factory=dict)
    hooks: Any = None                      # simulations.nodes.Hooks (planted bugs)
    verifier_cache: int = 1 << 17
    decode_cache: int = 1 << 17            # 0: every node decodes every copy itself
    trace: bool = True
    progress: bool = False
    factory: Any = None                    # override the node factory (tests)
    replay: str | None = None              # the CLI arguments of this run, when it came from the CLI

    def replay_args(self) -> str:
        """The CLI arguments that replay this run (for violation messages)."""
        if self.replay is not None:
            return self.replay
        return f"run --seed {self.seed} --nodes {self.nodes} --scenario {self.scenario} --events {self.events}"


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        from simulations.nodes import RealFactory

        self.cfg = cfg
        self.factory = cfg.factory or RealFactory(dissemination=cfg.dissemination, overrides=cfg.core_overrides,
                                                  hooks=cfg.hooks, verifier_cache=cfg.verifier_cache,
                                                  decode_cache=cfg.decode_cache)
        self.checker = Checker(self.factory.net, str(cfg.seed), replay=cfg.replay_args())
        self.world = World(seed=cfg.seed, factory=self.factory, net_params=cfg.net, checker=self.checker,
                           trace=cfg.trace)
        self.workload: Workload = make_workload(cfg.scenario, cfg.events, cfg.duration)
        self.opened: list[str] = []
        self.notes: list[str] = []
        self.hostile = Hostile(self)
        self.converged_at: float | None = None
        self.heal = 0.0
        self.warmup = 0.0                  # when the workload starts (set by build)
        self.plan: FaultPlan | None = None
        self.honest: list[SimNode] = []
        self.hostiles: list[SimNode] = []
        self.digest_history: list[tuple[float, int]] = []
        self.wall = 0.0
        self.cpu = 0.0
        self._t0 = 0.0
        self._c0 = 0.0

    # --- authoring ----------------------------------------------------------------------------

    def act(self, node: Any, make: Callable[[Any, Any, int], Any]) -> Any:
        """Let ``node``'s user author an event; None if the node is down or refuses locally."""
        from p2pauction.errors import UsageError

        w = self.world
        if not node.alive:
            w.counters.skipped_dead += 1
            return None
        try:
            ev = make(node.author, node.replica.ledger, node.wall_ms(w.now))
        except UsageError:
            w.counters.publish_refused += 1
            return None
        out = w.publish(node, ev)
        if out is None or not self.factory.accepted_kind(out):
            return None
        kind = str(ev.kind)
        w.counters.by_kind[kind] = w.counters.by_kind.get(kind, 0) + 1
        return ev

    # --- running ------------------------------------------------------------------------------

    def build(self) -> None:
        cfg = self.cfg
        w = self.world
        n = cfg.nodes
        spread = cfg.join_spread if cfg.join_spread is not None else 1.0 + n / 100.0
        warmup = cfg.warmup if cfg.warmup is not None else spread + 8.0
        self.warmup = warmup
        boot = w.add_node("bootstrap")
        w.start(boot)
        names = ["C1", "C2", "C3"] if cfg.scenario == "reference" else []
        for i in range(n):
            node = w.add_node(name=names[i] if i < len(names) else None)
            self.honest.append(node)
            w.sched.at(0.1 + spread * i / max(1, n), w.start, node)
        if isinstance(cfg.faults, FaultPlan):
            plan = cfg.faults
        else:
            plan = faults_mod.random_plan(random.Random(f"{cfg.seed}/plan"), n, _shift(cfg.faults, warmup,
                                                                                       self.workload.duration))
        self.plan = plan
        for h in range(plan.hostile_nodes):
            node = w.add_node(name=f"hostile{h}")
            node.hostile = True
            self.hostiles.append(node)
            w.sched.at(0.1 + spread * (h + 0.5) / max(1, plan.hostile_nodes), w.start, node)
        for spec in plan.hostile:
            if self.hostiles:
                w.sched.at(spec.at, self.hostile.act, self.hostiles[spec.node % len(self.hostiles)], spec.act)
        faults_mod.apply(plan, w, self.honest)
        self.workload.schedule(self, warmup)
        self.heal = max(plan.heal_time(), warmup + self.workload.duration)
        w.sched.at(self.heal, self._probe)
        if cfg.progress:
            w.sched.at(5.0, self._progress)

    def _probe(self) -> None:
        w = self.world
        d = w.digests()
        self.digest_history.append((w.now, len(d)))
        if len(d) == 1 and sum(d.values()) > 0:
            self.converged_at = w.now
            w.sched.halt()
            return
        if w.now < self.heal + self.cfg.bound:
            w.sched.at(w.now + self.cfg.probe, self._probe)

    def _progress(self) -> None:
        w = self.world
        # wall and CPU clocks are read for the progress display only, never by the simulation
        st = w.net.stats
        rate = st.frames_delivered / max(1e-9, time.perf_counter() - self._t0)
        cpu_rate = st.frames_delivered / max(1e-9, time.process_time() - self._c0)
        print(f"[sim] t={w.now:7.1f}s live={len(w.honest_live())} delivered={st.frames_delivered} "
              f"({rate:,.0f}/s wall, {cpu_rate:,.0f}/s CPU) accepted={w.counters.accepted} "
              f"digests={len(w.digests())} rss={peak_rss_mb():.0f}MB", file=sys.stderr, flush=True)
        w.sched.at(w.now + 5.0, self._progress)

    def run(self) -> dict[str, Any]:
        if self.plan is None:  # a caller may build first, to save the concrete plan before running
            self.build()
        w = self.world
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        with fewer_gc_passes():
            w.sched.run_until(self.heal + self.cfg.bound + 1e-9)
        self.wall = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._c0
        if self.converged_at is None:
            d = w.digests()
            self.checker.violation("liveness", w.now,
                                   f"{len(d)} distinct digests among {sum(d.values())} live honest nodes "
                                   f"{self.cfg.bound:.0f}s after heal")
        self.final = self.checker.final(w.nodes, w.now)
        self.workload.final_check(self)
        return self.summary()

    # --- results ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return summarise(self)


# --- the summary of a run (written out by simulations.report) ---------------------------------

def core_totals(sim: Simulation) -> dict[str, int]:
    """Sum of the cores' event counters over live nodes plus every crashed incarnation."""
    tot: dict[str, int] = dict(sim.world.retired)
    for n in sim.world.nodes:
        if n.core is None or n.role != "node" or n.hostile:
            continue
        for k, v in _event_counters(n.core).items():
            tot[k] = tot.get(k, 0) + v
    return dict(sorted(tot.items()))


def _event_counters(core: Any) -> dict[str, int]:
    try:
        st = core.stats()
    except Exception:
        return {}
    ev = st.get("events", {}) if isinstance(st, dict) else {}
    return {k: v for k, v in ev.items() if isinstance(v, int) and not isinstance(v, bool)}


def hops_figures(sim: Simulation) -> dict[str, Any]:
    # a hop count of MAX_HOPS (1024) means "unknown" (a copy repaired by anti-entropy): not a path length
    hm = [h for h in sim.world.hops_max.values() if 0 < h < 1024]
    n = len(sim.honest)
    if not hm:
        return {"events": 0, "log2_n": round(math.log2(max(2, n)), 2)}
    return {
        "events": len(hm),
        "max_hops_mean": round(statistics.fmean(hm), 2),
        "max_hops_median": statistics.median(hm),
        "max_hops_max": max(hm),
        "log2_n": round(math.log2(max(2, n)), 2),
    }


def summarise(sim: Simulation) -> dict[str, Any]:
    w = sim.world
    cfg = sim.cfg
    st = w.net.stats
    totals = core_totals(sim)
    received = totals.get("accepted", 0) - totals.get("own", 0)
    copies = totals.get("copies_received", 0)
    d = w.digests()
    chk = sim.checker.summary()
    return {
        "seed": cfg.seed,
        "replay": f"python -m simulations {cfg.replay_args()}",
        "scenario": cfg.scenario,
        "nodes": cfg.nodes,
        "hostile_nodes": len(sim.hostiles),
        "dissemination": cfg.dissemination,
        "net": {"latency": list(cfg.net.latency), "jitter": cfg.net.jitter, "loss": cfg.net.loss,
                "dup": cfg.net.dup, "reorder": cfg.net.reorder},
        "faults": sim.plan.to_json() if sim.plan is not None else {},
        "converged": sim.converged_at is not None,
        "heal_time": round(sim.heal, 3),
        "converged_at": None if sim.converged_at is None else round(sim.converged_at, 3),
        "converged_after_heal": None if sim.converged_at is None else round(sim.converged_at - sim.heal, 3),
        "liveness_bound": cfg.bound,
        "virtual_time": round(w.now, 3),
        "live_honest_nodes": sum(d.values()),
        "distinct_digests": len(d),
        "events_valid": len(sim.checker.oracle.facts),
        "events_published": w.counters.publish_accepted,
        "events_refused_locally": w.counters.publish_refused,
        "frames_sent": st.frames_sent,
        "frames_delivered": st.frames_delivered,
        "bytes_delivered": st.bytes_delivered,
        "copies_per_delivered_event": round(copies / received, 3) if received else None,
        # the same, counting the event payloads anti-entropy carried as well
        "copies_per_delivered_event_incl_ae": (round((copies + totals.get("ae_events_received", 0)) / received, 3)
                                               if received else None),
        "core_event_counters": totals,
        "hops": hops_figures(sim),
        "network": w.net.snapshot(),
        "world": {"crashes": w.counters.crashes, "restarts": w.counters.restarts, "joins": w.counters.joins,
                  "leaves": w.counters.leaves, "injected_frames": w.counters.injected_frames,
                  "core_errors": w.counters.core_errors, "stalls": w.counters.stalls,
                  "storage_faults": w.counters.storage_faults,
                  "publish_store_failed": w.counters.publish_store_failed,
                  "authored_by_kind": dict(sorted(w.counters.by_kind.items())),
                  "skipped_dead": w.counters.skipped_dead, "steps": w.sched.steps},
        "hostile_acts": dict(sorted(sim.hostile.done.items())),
        "final_state": getattr(sim, "final", {}),
        "checker": chk,
        "violations": chk["violations_by_kind"],
        "ok": chk["ok"],
        "wall_seconds": round(sim.wall, 3),
        "deliveries_per_wall_second": round(st.frames_delivered / sim.wall) if sim.wall > 0 else None,
        "cpu_seconds": round(sim.cpu, 3),
        "deliveries_per_cpu_second": round(st.frames_delivered / sim.cpu) if sim.cpu > 0 else None,
        "decode_cache": _cache_stats(sim, "decode_cache"),
        "frame_cache": _cache_stats(sim, "frame_cache"),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "trace_hash": w.trace_hash() if cfg.trace else None,
        "notes": sim.notes[:20],
    }


def _cache_stats(sim: Simulation, which: str) -> dict[str, int] | None:
    c = getattr(sim.factory, which, None)
    return None if c is None else {"hits": c.hits, "misses": c.misses}


def _shift(opts: FaultOptions, warmup: float, duration: float) -> FaultOptions:
    """Fault options are given relative to the workload window; make them absolute."""
    def win(w: tuple[float, float]) -> tuple[float, float]:
        if w == (0.0, 0.0):
            return (warmup, warmup + 0.8 * duration)
        return (warmup + w[0], warmup + w[1])

    return FaultOptions(
        partitions=[(k, warmup + s, warmup + e, f) for k, s, e, f in opts.partitions],
        crash_fraction=opts.crash_fraction, crash_window=win(opts.crash_window), crash_down=opts.crash_down,
        churn_joins=opts.churn_joins, churn_leaves=opts.churn_leaves, churn_window=win(opts.churn_window),
        hostile_nodes=opts.hostile_nodes, hostile_acts=opts.hostile_acts, hostile_window=win(opts.hostile_window),
        skew_ms=opts.skew_ms, storage_faults=opts.storage_faults, storage_window=win(opts.storage_window))


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Run with rarer cyclic garbage collection, then restore the thresholds.

    A run holds millions of long-lived objects (every node's ledger) and makes few reference
    cycles (a run of 200 nodes frees about a thousand objects through the collector), so the
    default thresholds spend 10-15% of the run re-scanning live objects. Cycles are still
    collected, only less often.
    """
    old = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def quiet_logs(level: str = "error") -> None:
    """Thousands of simulated nodes logging every ban would drown the verdict: keep ``level`` and up."""
    from p2pauction.logs import set_level

    set_level(level)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def log2(n: int) -> float:
    return math.log2(max(2, n))
