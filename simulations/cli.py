"""``python -m simulations run ...``: one simulated network, its verdict and its report.

Exit status: 0 when every safety check held and the network converged within the bound, 1 when
the checker found a violation (the summary names it and the arguments that replay it), 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from simulations.faults import PARTITION_KINDS, FaultOptions, FaultPlan
from simulations.network import NetParams
from simulations.runner import SimConfig, Simulation, quiet_logs


def _range(text: str, scale: float = 1.0) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    a = float(lo) * scale
    b = float(hi) * scale if hi else a
    if b < a or a < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a LO-HI range")
    return (a, b)


def _partition(text: str) -> tuple[str, float, float, float]:
    """KIND:START-END[:FRACTION], times in seconds from the start of the workload."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in PARTITION_KINDS:
        raise argparse.ArgumentTypeError(f"--partition wants KIND:START-END[:FRACTION] with KIND in {PARTITION_KINDS}")
    start, end = _range(parts[1])
    frac = float(parts[2]) if len(parts) == 3 else 0.5
    return (parts[0], start, end, frac)


def _kv(text: str) -> tuple[str, Any]:
    key, _, val = text.partition("=")
    if not key or not _:
        raise argparse.ArgumentTypeError("--set wants KEY=VALUE (a GossipConfig field)")
    try:
        return key, json.loads(val)
    except ValueError:
        return key, val


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulations", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one simulation")
    r.add_argument("--nodes", type=int, default=30, help="honest nodes (plus one bootstrap and any hostiles)")
    r.add_argument("--seed", default="1", help="one seed, one run")
    r.add_argument("--scenario", choices=("reference", "random", "hot"), default="random")
    r.add_argument("--events", type=int, default=200, help="authored actions (random, hot)")
    r.add_argument("--duration", type=float, default=None, help="workload window in virtual seconds")
    r.add_argument("--loss", type=float, default=0.0, help="share of protocol frames lost")
    r.add_argument("--dup", type=float, default=0.0, help="share of protocol frames duplicated")
    r.add_argument("--reorder", type=float, default=0.0, help="share of protocol frames delayed past later ones")
    r.add_argument("--latency", type=lambda s: _range(s, 0.001), default=(0.010, 0.050), help="ms, LO-HI")
    r.add_argument("--jitter", type=float, default=5.0, help="ms")
    r.add_argument("--partition", type=_partition, action="append", default=[],
                   help="KIND:START-END[:FRACTION] (KIND symmetric|asymmetric|bridge; seconds into the workload)")
    r.add_argument("--crash", type=float, default=0.0, help="share of nodes that crash and restart")
    r.add_argument("--down", type=_range, default=(2.0, 15.0), help="seconds a crashed node stays down, LO-HI")
    r.add_argument("--churn", default="0:0", help="JOINS:LEAVES nodes joining / leaving for good")
    r.add_argument("--skew", type=int, default=0, help="max clock skew, ms")
    r.add_argument("--storage-faults", type=float, default=0.0, metavar="P",
                   help="share of honest nodes' store commits that fail (disk full / I/O error)")
    r.add_argument("--storage-window", type=_range, default=(0.0, 0.0), metavar="START-END",
                   help="when storage faults happen, seconds into the workload (default: its first 80%%)")
    r.add_argument("--hostile", default="0", help="N[:ACTS] hostile nodes and acts each")
    r.add_argument("--bound", type=float, default=120.0, help="liveness bound after heal, seconds")
    r.add_argument("--join-spread", type=float, default=None,
                   help="nodes start over this many seconds (default 1 + N/100)")
    r.add_argument("--warmup", type=float, default=None, help="workload starts here (default join spread + 8 s)")
    r.add_argument("--dissemination", choices=("plumtree", "flood", "none"), default="plumtree")
    r.add_argument("--no-decode-cache", action="store_true", help="every node decodes every copy itself")
    r.add_argument("--loss-mode", choices=("message", "tcp"), default="message",
                   help="message: lost frames vanish; tcp: they arrive late (retransmission)")
    r.add_argument("--set", type=_kv, action="append", default=[], help="GossipConfig KEY=VALUE")
    r.add_argument("--plan", type=Path, help="replay an exact fault plan (JSON from a report)")
    r.add_argument("--report", type=Path, help="write report.json (+ coverage.png) here")
    r.add_argument("--check-determinism", action="store_true", help="run twice, compare trace hashes")
    r.add_argument("--compare-flood", action="store_true",
                   help="also run the same seed with plain flooding and compare copies per event")
    r.add_argument("--progress", action="store_true", help="progress lines on stderr")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.add_argument("--profile", type=Path, help="write cProfile stats here")
    r.add_argument("--log-level", default="error", choices=("debug", "info", "warning", "error"),
                   help="log level of the simulated nodes (default error)")
    return p


def config_from(args: argparse.Namespace) -> SimConfig:
    joins, _, leaves = args.churn.partition(":")
    hn, _, hacts = args.hostile.partition(":")
    faults: FaultOptions | FaultPlan
    if args.plan is not None:
        data = json.loads(args.plan.read_text())
        faults = FaultPlan.from_json(data.get("faults", data))
    else:
        faults = FaultOptions(partitions=list(args.partition), crash_fraction=args.crash, crash_down=args.down,
                              churn_joins=int(joins or 0), churn_leaves=int(leaves or 0),
                              hostile_nodes=int(hn or 0), hostile_acts=int(hacts or (6 if int(hn or 0) else 0)),
                              skew_ms=args.skew, storage_faults=args.storage_faults,
                              storage_window=args.storage_window)
    seed: int | str = int(args.seed) if args.seed.isdigit() else args.seed
    return SimConfig(
        seed=seed, nodes=args.nodes, scenario=args.scenario, events=args.events, duration=args.duration,
        net=NetParams(latency=args.latency, jitter=args.jitter / 1000.0, loss=args.loss, dup=args.dup,
                      reorder=args.reorder, loss_mode=args.loss_mode),
        decode_cache=0 if args.no_decode_cache else 1 << 17,
        faults=faults, bound=args.bound, dissemination=args.dissemination,
        join_spread=args.join_spread, warmup=args.warmup,
        core_overrides=dict(args.set), progress=args.progress)


def replay_line(argv: list[str]) -> str:
    keep: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--report", "--profile", "--log-level"):
            skip = True
            continue
        if a in ("--check-determinism", "--progress", "--json"):
            continue
        keep.append(a)
    return " ".join(shlex.quote(a) for a in keep)


def run_once(cfg: SimConfig, profile: Path | None = None) -> tuple[Simulation, dict[str, Any]]:
    sim = Simulation(cfg)
    if profile is None:
        return sim, sim.run()
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    s = sim.run()
    prof.disable()
    prof.dump_stats(str(profile))
    return sim, s


def main(argv: list[str] | None = None) -> int:
    from simulations.report import summary_line, write

    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if from_shell:  # an embedding caller (a test) keeps its own logging configuration
        quiet_logs(args.log_level)
    cfg = config_from(args)
    cfg.replay = replay_line(argv)
    sim, s = run_once(cfg, args.profile)
    s["replay"] = f"python -m simulations {cfg.replay}"
    status = 0 if s["ok"] else 1
    if args.check_determinism:
        cfg2 = config_from(args)
        cfg2.replay = cfg.replay
        cfg2.progress = False
        _, s2 = run_once(cfg2)
        same = s2["trace_hash"] == s["trace_hash"]
        s["determinism"] = {"same_trace": same, "second_trace_hash": s2["trace_hash"]}
        print(f"determinism: {'same trace hash' if same else 'DIFFERENT trace hashes'} "
              f"({s['trace_hash'][:16]} / {s2['trace_hash'][:16]})")
        if not same:
            status = 1
    if args.compare_flood:
        cfg3 = config_from(args)
        cfg3.dissemination = "flood"
        cfg3.progress = False
        _, s3 = run_once(cfg3)
        s["flood_comparison"] = {
            "copies_per_delivered_event": s3["copies_per_delivered_event"],
            "frames_sent": s3["frames_sent"], "bytes_delivered": s3["bytes_delivered"],
            "hops": s3["hops"], "converged": s3["converged"],
        }
        print(f"flooding on the same overlay: copies/event {s3['copies_per_delivered_event']} "
              f"(this run {s['copies_per_delivered_event']}), frames {s3['frames_sent']} "
              f"(this run {s['frames_sent']}), hops_max {s3['hops'].get('max_hops_max', '-')}")
    if args.report is not None:
        written = write(sim, s, args.report)
        for p in written:
            print(f"wrote {p}")
        if not any(p.suffix == ".png" for p in written):
            print("coverage.png skipped: matplotlib is not installed (pip install -e '.[plot]')")
    if args.json:
        print(json.dumps(s, sort_keys=True, default=str))
    print(summary_line(s))
    if not s["ok"]:
        for v in s["checker"]["violations"][:10]:
            print(f"  violation {v['kind']} at t={v['time']}: {v['detail']}")
        print(f"  replay: {s['replay']}")
    return status
