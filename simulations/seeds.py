"""Many seeds of the acceptance scenario: ``python -m simulations.seeds --count 1000 --nodes 200``.

Each seed runs the issue's fault mix -- 10% frame loss, a symmetric partition that forms and
heals, 5% of the nodes crashing and restarting, hostile authors -- and must keep every safety
invariant and converge within the bound. Seeds run on a local process pool (``--jobs N``) or on
a Dask cluster (``--scheduler ADDRESS``, the ``cluster`` extra; every worker needs this project
installed). One JSON line per seed goes to ``--out`` as it finishes; a failing seed's
``replay.json`` goes to ``--replays DIR/SEED/`` and its replay command is printed. A seed whose
worker died is retried up to ``--retries`` times, then recorded as an error. ``--budget`` stops
starting new seeds after that many wall seconds (the ones running finish). The end is a summary
table. Ctrl-C stops at once (exit 130), keeping the lines written so far.

Exit status: 0 when every seed that ran passed, 1 when one failed or errored, 2 on bad arguments,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from simulations import replay
from simulations.cli import gossip_setting
from simulations.faults import FaultOptions
from simulations.network import NetParams
from simulations.progress import MODES, Display
from simulations.runner import SimConfig
from simulations.sweep import Sweep, ignore_sigint, summary_table


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
    )


def acceptance_spec(seed: int, nodes: int, events: int, bound: float, hooks: str | None = None,
                    storage: float = 0.0, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run spec a sweep ships for one seed (with the trace hash on, to compare runs);
    ``overrides``: GossipConfig fields for every node (``--set``)."""
    cfg = acceptance_config(seed, nodes, events, bound=bound, storage=storage)
    cfg.trace = True
    cfg.core_overrides = dict(overrides or {})
    return replay.spec_of(cfg, hooks=hooks)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulations.seeds", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=int, default=1)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--bound", type=float, default=120.0)
    p.add_argument("--jobs", type=int, default=1, help="local worker processes")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of a local pool")
    p.add_argument("--retries", type=int, default=2, help="attempts after the first for a seed whose worker died")
    p.add_argument("--out", type=Path, default=Path("seeds.jsonl"))
    p.add_argument("--replays", type=Path, default=None,
                   help="replay.json of each failing seed goes to DIR/SEED/ (default: OUT's name + '-replays')")
    p.add_argument("--budget", type=float, default=0.0, help="stop starting new seeds after this many wall seconds")
    p.add_argument("--hooks", default=None, metavar="MODULE:NAME", help="planted bugs (see run --hooks)")
    p.add_argument("--progress", choices=MODES, default="auto", help="on stderr (see run --progress)")
    p.add_argument("--progress-every", type=float, default=10.0, help="seconds between plain progress lines")
    p.add_argument("--storage-faults", type=float, default=0.0, metavar="P",
                   help="also fail this share of honest store commits (disk full / I/O error), 2-24 s in")
    p.add_argument("--set", type=gossip_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="a GossipConfig field for every node, the value as JSON (e.g. reconcile=riblt)")
    return p


class DaskClient(Protocol):
    """The part of ``distributed.Client`` the sweep uses (distributed ships no type hints)."""

    def nthreads(self) -> dict[str, int]: ...

    def get_executor(self, **kwargs: Any) -> Executor: ...

    def close(self, timeout: Any = None) -> Any: ...


@contextmanager
def executor_for(args: argparse.Namespace) -> Iterator[tuple[Callable[[], Executor], int]]:
    """A factory of executors and how many seeds to keep in flight."""
    if args.scheduler is None:
        jobs = max(1, args.jobs)
        yield (lambda: ProcessPoolExecutor(jobs, initializer=ignore_sigint)), 2 * jobs
        return
    try:
        distributed = importlib.import_module("distributed")
    except ImportError as exc:
        raise SystemExit("error: --scheduler needs Dask's distributed package: pip install -e '.[cluster]'") from exc
    client: DaskClient = distributed.Client(args.scheduler, timeout="30s")
    try:
        slots = max(1, sum(client.nthreads().values()))
        # pure=False: a retried seed must run again, not be answered from the first attempt's key
        yield (lambda: client.get_executor(pure=False)), 2 * slots
    finally:
        client.close(timeout=10)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.count < 1 or args.retries < 0:
        print("error: --count must be at least 1 and --retries at least 0", file=sys.stderr)
        return 2
    replays = args.replays if args.replays is not None else args.out.with_name(args.out.stem + "-replays")
    specs = [(s, acceptance_spec(s, args.nodes, args.events, args.bound, args.hooks,
                                   args.storage_faults, dict(args.set)))
             for s in range(args.start, args.start + args.count)]
    display = Display(args.progress, every=args.progress_every)
    sweep: Sweep | None = None
    try:
        with executor_for(args) as (make_executor, window), args.out.open("w") as out:
            sweep = Sweep(specs, make_executor, out=out, replay_dir=replays, window=window, retries=args.retries,
                          budget=args.budget, display=display, report=lambda line: print(line, flush=True))
            tally = sweep.run()
    except KeyboardInterrupt:
        display.close()
        done = f"{sweep.tally.done}/{sweep.tally.total} seeds done ({len(sweep.tally.failed)} failed)" \
            if sweep is not None else f"0/{args.count} seeds done"
        print(f"interrupted: {done}; partial results kept in {args.out}", file=sys.stderr, flush=True)
        return 130
    print(f"seeds {args.start}..{args.start + args.count - 1} of the acceptance mix, {args.nodes} nodes "
          f"(bound {args.bound:g}s), results in {args.out}:")
    print(summary_table(tally, sweep.elapsed()))
    if tally.failed:
        print(f"failed seeds: {tally.failed[:20]}{' ...' if len(tally.failed) > 20 else ''} "
              f"(replay.json of each in {replays}/)")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
