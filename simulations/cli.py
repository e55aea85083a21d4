"""``python -m simulations run ...``: one simulated network, its verdict and its report.

Every run saves ``replay.json`` (all its parameters and its concrete fault plan) in ``--report
DIR``, or in ``sim-runs/SEED-TIMESTAMP/`` without it, and ends with the one line that replays it:
``replay: python -m simulations run --seed S --plan DIR/replay.json`` (same trace hash).

Exit status: 0 when every safety check held and the network converged within the bound, 1 when
the checker found a violation or the run did not converge (the summary names it), 2 on bad
arguments, 130 when interrupted (Ctrl-C; replay.json and a partial report.json are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from p2pauction.errors import UsageError
from simulations import replay
from simulations.faults import PARTITION_KINDS, FaultOptions, FaultPlan
from simulations.network import NetParams
from simulations.progress import MODES, Display, RunMonitor
from simulations.report import summary_line, write
from simulations.runner import SimConfig, Simulation, quiet_logs

DEFAULT_RUNS_DIR = "sim-runs"


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


def gossip_setting(text: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``: a GossipConfig field, the value as JSON (else the text)."""
    key, _, val = text.partition("=")
    if not key or not _:
        raise argparse.ArgumentTypeError("--set wants KEY=VALUE (a GossipConfig field)")
    try:
        return key, json.loads(val)
    except ValueError:
        return key, val


def parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and its ``run`` subparser."""
    p = argparse.ArgumentParser(prog="python -m simulations", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one simulation")
    r.add_argument("--nodes", type=int, default=30, help="honest nodes (plus one bootstrap and any hostiles)")
    r.add_argument("--seed", default="1", help="one seed, one run")
    r.add_argument("--scenario", choices=("reference", "random", "hot", "chain", "chain-burst"), default="random")
    r.add_argument("--events", type=int, default=200, help="authored actions (random, hot)")
    r.add_argument("--duration", type=float, default=None, help="workload window in virtual seconds")
    r.add_argument("--loss", type=float, default=0.0, help="share of protocol frames whose message is lost (the channel stays intact)")
    r.add_argument("--dup", type=float, default=0.0, help="ignored: encrypted links cannot carry a duplicate (kept for old command lines)")
    r.add_argument("--reorder", type=float, default=0.0, help="share of protocol frames delayed (holding back the later ones: the channel is in order)")
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
    r.add_argument("--set", type=gossip_setting, action="append", default=[], help="GossipConfig KEY=VALUE")
    r.add_argument("--hooks", default=None, metavar="MODULE:NAME",
                   help="planted bugs: a simulations.nodes.Hooks (or a function returning one) by import path")
    r.add_argument("--plan", type=Path,
                   help="replay.json or report.json: replay that run exactly (no other run flags allowed); "
                        "or a bare fault plan JSON, applied with the other flags")
    r.add_argument("--report", type=Path,
                   help="write replay.json, report.json (+ coverage.png) here "
                        f"(default: replay.json only, in {DEFAULT_RUNS_DIR}/SEED-TIMESTAMP/)")
    r.add_argument("--check-determinism", action="store_true", help="run twice, compare trace hashes")
    r.add_argument("--compare-flood", action="store_true",
                   help="also run the same seed with plain flooding and compare copies per event")
    r.add_argument("--progress", choices=MODES, default="auto",
                   help="on stderr: auto (a live line on a terminal, else plain lines), tty, lines, off")
    r.add_argument("--progress-every", type=float, default=10.0, help="seconds between plain progress lines")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.add_argument("--profile", type=Path, help="write cProfile stats here")
    r.add_argument("--log-level", default="error", choices=("debug", "info", "warning", "error"),
                   help="log level of the simulated nodes (default error)")
    return p, r


# flags that change how a run is shown or saved, not what it does: allowed next to --plan replay.json
_NOT_RUN_PARAMETERS = frozenset(("cmd", "seed", "plan", "report", "check_determinism", "compare_flood",
                                 "progress", "progress_every", "json", "profile", "log_level"))


def config_from(args: argparse.Namespace, plan: FaultPlan | None = None) -> SimConfig:
    """The run the flags describe; ``plan`` (a bare fault plan from ``--plan``) replaces the fault flags."""
    joins, _, leaves = args.churn.partition(":")
    hn, _, hacts = args.hostile.partition(":")
    faults: FaultOptions | FaultPlan
    if plan is not None:
        faults = plan
    else:
        faults = FaultOptions(partitions=list(args.partition), crash_fraction=args.crash, crash_down=args.down,
                              churn_joins=int(joins or 0), churn_leaves=int(leaves or 0),
                              hostile_nodes=int(hn or 0), hostile_acts=int(hacts or (6 if int(hn or 0) else 0)),
                              skew_ms=args.skew, storage_faults=args.storage_faults,
                              storage_window=args.storage_window)
    return SimConfig(
        seed=_seed(args.seed), nodes=args.nodes, scenario=args.scenario, events=args.events, duration=args.duration,
        net=NetParams(latency=args.latency, jitter=args.jitter / 1000.0, loss=args.loss, dup=args.dup,
                      reorder=args.reorder, loss_mode=args.loss_mode),
        decode_cache=0 if args.no_decode_cache else 1 << 17,
        faults=faults, bound=args.bound, dissemination=args.dissemination,
        join_spread=args.join_spread, warmup=args.warmup,
        core_overrides=dict(args.set))


def _seed(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def given_flags(argv: list[str]) -> set[str]:
    """The ``run`` options spelled out on the command line (not left at their defaults)."""
    p, r = _parsers()
    unset = object()  # not a string, so argparse does not run it through the options' types
    r.set_defaults(**{dest: unset for dest in vars(p.parse_args(argv))})
    return {k for k, v in vars(p.parse_args(argv)).items() if v is not unset}


def spec_from(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """The run spec: from the flags, or exactly the one ``--plan`` names (refusing conflicting flags)."""
    if args.plan is None:
        return replay.spec_of(config_from(args), hooks=args.hooks)
    found = replay.read_plan_file(args.plan)
    if isinstance(found, FaultPlan):
        return replay.spec_of(config_from(args, found), hooks=args.hooks)
    given = given_flags(argv)
    extra = sorted(given - _NOT_RUN_PARAMETERS)
    if extra:
        flags = ", ".join("--" + d.replace("_", "-") for d in extra)
        raise UsageError(f"--plan {args.plan} fixes every parameter of the run; drop {flags} "
                         "(or drop --plan and give all the flags)")
    if "seed" in given and _seed(args.seed) != found.get("seed"):
        raise UsageError(f"--seed {args.seed} but {args.plan} is the run of seed {found.get('seed')!r}: "
                         "a plan replays only its own seed")
    return found


def default_run_dir(seed: int | str, root: Path = Path(DEFAULT_RUNS_DIR)) -> Path:
    """``sim-runs/SEED-YYYYmmddTHHMMSSZ[-N]/``, a new directory for each run."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = f"{seed}-{stamp}"
    for n in range(1000):
        d = root / (base if n == 0 else f"{base}-{n}")
        try:
            d.mkdir(parents=True)
            return d
        except FileExistsError:
            continue
    raise UsageError(f"{root} already holds 1000 runs of seed {seed} made this second")


def run_once(sim: Simulation, profile: Path | None = None) -> tuple[Simulation, dict[str, Any]]:
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
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if from_shell:  # an embedding caller (a test) keeps its own logging configuration
        quiet_logs(args.log_level)
    try:
        spec = spec_from(args, argv)
        cfg = replay.config_of(spec)
        run_dir = args.report if args.report is not None else default_run_dir(cfg.seed)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    replay_path = run_dir / replay.FILE_NAME
    command = replay.command(cfg.seed, replay_path)
    cfg.replay = command.removeprefix("python -m simulations ")
    sim = Simulation(cfg)
    monitor = RunMonitor(sim, Display(args.progress, every=args.progress_every))
    saved = False
    try:
        sim.build()
        replay_spec = replay.spec_of(cfg, sim.plan, spec["hooks"])
        replay.write(run_dir, replay_spec)
        saved = True
        monitor.attach()
        _, s = run_once(sim, args.profile)
        monitor.finish()
        return _finish(args, sim, s, monitor, run_dir, replay_spec, command)
    except KeyboardInterrupt:
        monitor.finish()
        if not saved:
            print("interrupted: while building the network; nothing saved", file=sys.stderr, flush=True)
            return 130
        kept = _write_partial(sim, monitor, run_dir)
        print(f"interrupted: at virtual time {sim.world.now:.1f}s ({monitor.phase()}); "
              f"partial results kept in {kept}; {command}", file=sys.stderr, flush=True)
        return 130


def _write_partial(sim: Simulation, monitor: RunMonitor, run_dir: Path) -> Path:
    """After Ctrl-C: the report so far (marked interrupted) next to replay.json, if it can be made."""
    try:
        s = sim.summary()
        s["interrupted"] = True
        write(sim, s, run_dir, monitor.timeline, plot_png=False)
    except Exception:  # a half-run world may not summarise; replay.json is kept either way
        return run_dir / replay.FILE_NAME
    return run_dir / "report.json"


def _finish(args: argparse.Namespace, sim: Simulation, s: dict[str, Any], monitor: RunMonitor, run_dir: Path,
            replay_spec: dict[str, Any], command: str) -> int:
    s["replay"] = command
    s["run"] = replay_spec
    status = 0 if s["ok"] else 1
    if args.check_determinism:
        _, s2 = run_once(Simulation(replay.config_of(replay_spec)))
        same = s2["trace_hash"] == s["trace_hash"]
        s["determinism"] = {"same_trace": same, "second_trace_hash": s2["trace_hash"]}
        print(f"determinism: {'same trace hash' if same else 'DIFFERENT trace hashes'} "
              f"({s['trace_hash'][:16]} / {s2['trace_hash'][:16]})")
        if not same:
            status = 1
    if args.compare_flood:
        cfg3 = replay.config_of(replay_spec)
        cfg3.dissemination = "flood"
        _, s3 = run_once(Simulation(cfg3))
        s["flood_comparison"] = {
            "copies_per_delivered_event": s3["copies_per_delivered_event"],
            "frames_sent": s3["frames_sent"], "bytes_delivered": s3["bytes_delivered"],
            "hops": s3["hops"], "converged": s3["converged"],
        }
        print(f"flooding on the same overlay: copies/event {s3['copies_per_delivered_event']} "
              f"(this run {s['copies_per_delivered_event']}), frames {s3['frames_sent']} "
              f"(this run {s['frames_sent']}), hops_max {s3['hops'].get('max_hops_max', '-')}")
    if args.report is not None:
        written = write(sim, s, run_dir, monitor.timeline)
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
    print(f"replay: {command}")
    return status
