"""Run many seeds on any ``concurrent.futures`` executor; stream results; survive lost workers.

Each task is a run spec (:mod:`simulations.replay`), so a worker needs nothing but the spec, and a
failing seed's concrete spec comes back to be saved as its ``replay.json``. The sweep:

- keeps at most ``window`` seeds in flight (so ``budget`` can stop starting new ones, and Ctrl-C
  has little to cancel), and submits more as results come in;
- appends one JSON line per seed to ``out`` as each finishes, flushed, in completion order;
- retries a seed whose task failed (a worker died, a pool broke) up to ``retries`` times, on a
  fresh pool when the local pool broke, then records it as an ``error`` line;
- on KeyboardInterrupt cancels what has not started and ends the workers (see :func:`stop`).

A local ``ProcessPoolExecutor`` cannot tell which seed killed a broken pool, so every seed in
flight when it broke counts one attempt. On Dask, the scheduler itself moves the tasks of a lost
worker to another one; a task that keeps killing workers comes back as an error and is retried here.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from simulations import replay
from simulations.progress import Display, clock_text, eta_text

POLL = 0.5   # wall seconds between two looks at the futures (progress and Ctrl-C stay responsive)


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec (in a worker); the result line, with the concrete spec when the seed failed."""
    from simulations.runner import Simulation, quiet_logs

    quiet_logs()
    sim = Simulation(replay.config_of(spec))
    sim.build()
    s = sim.run()
    row: dict[str, Any] = {
        "seed": s["seed"], "status": "ok" if s["ok"] else "failed", "ok": s["ok"], "converged": s["converged"],
        "converged_after_heal": s["converged_after_heal"], "violations": s["violations"],
        "first_violation": s["checker"]["violations"][:1], "trace_hash": s["trace_hash"],
        "frames_delivered": s["frames_delivered"], "copies_per_delivered_event": s["copies_per_delivered_event"],
        "wall": s["wall_seconds"], "deliveries_per_wall_second": s["deliveries_per_wall_second"],
        # what the sweep is evidence of: commits made to fail, and events acknowledged (none lost
        # unless the checker says acknowledged_lost / acknowledged_not_stored)
        "storage_faults": s["world"]["storage_faults"], "publish_store_failed": s["world"]["publish_store_failed"],
        "acknowledged": s["checker"]["acknowledged"], "crashes": s["world"]["crashes"],
    }
    if not s["ok"]:
        row["run"] = replay.spec_of(sim.cfg, sim.plan, spec["hooks"])
    return row


def ignore_sigint() -> None:
    """Worker initializer: Ctrl-C on a terminal reaches the whole process group; only the sweep's
    own process reacts (it cancels and ends the workers), so a worker never dies half-way with a
    traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Tally:
    """What the sweep has seen so far (the summary table and the progress line)."""

    total: int
    done: int = 0
    ok: int = 0
    violations: int = 0
    not_converged: int = 0
    errors: int = 0
    retried: int = 0
    not_started: int = 0
    storage_faults: int = 0        # summed over the seeds that ran
    acknowledged: int = 0
    convergence: list[float] = field(default_factory=list)
    failed: list[Any] = field(default_factory=list)   # seeds that failed or errored

    def add(self, row: dict[str, Any]) -> None:
        self.done += 1
        if row["status"] == "error":
            self.errors += 1
            self.failed.append(row["seed"])
            return
        self.storage_faults += int(row.get("storage_faults", 0))
        self.acknowledged += int(row.get("acknowledged", 0))
        if row["violations"] and set(row["violations"]) != {"liveness"}:
            self.violations += 1
        if not row["converged"]:
            self.not_converged += 1
        if row["ok"]:
            self.ok += 1
        else:
            self.failed.append(row["seed"])
        if row["converged_after_heal"] is not None:
            self.convergence.append(float(row["converged_after_heal"]))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def summary_table(t: Tally, wall: float) -> str:
    rows = [("seeds run", f"{t.done} of {t.total}" + (f" ({t.not_started} not started)" if t.not_started else "")),
            ("ok", str(t.ok)), ("with safety violations", str(t.violations)),
            ("not converged within the bound", str(t.not_converged)),
            ("errors (no result after retries)", str(t.errors)), ("retries", str(t.retried))]
    if t.storage_faults:
        rows.append(("store commits made to fail", str(t.storage_faults)))
    rows.append(("acknowledgements checked (node x event)", str(t.acknowledged)))
    if t.convergence:
        c = t.convergence
        rows.append(("convergence after heal (s)",
                     f"p50 {percentile(c, 50):.1f}  p90 {percentile(c, 90):.1f}  p99 {percentile(c, 99):.1f}  "
                     f"max {max(c):.1f}"))
    rows.append(("wall time", clock_text(wall)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


@dataclass
class _Task:
    seed: Any
    spec: dict[str, Any]
    attempts: int = 0


class Sweep:
    """One sweep over ``specs`` (seed, spec) on executors made by ``make_executor``."""

    def __init__(self, specs: Iterable[tuple[Any, dict[str, Any]]], make_executor: Callable[[], Executor], *,
                 out: IO[str], replay_dir: Path, window: int, retries: int = 2, budget: float = 0.0,
                 display: Display | None = None, report: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = deque(_Task(seed, spec) for seed, spec in specs)
        self.tally = Tally(total=len(self.queue))
        self.make_executor = make_executor
        self.out = out
        self.replay_dir = replay_dir
        self.window = max(1, window)
        self.retries = retries
        self.budget = budget
        self.display = display
        self.report = report
        self.clock = clock
        self.started = clock()
        self.inflight: dict[Future[dict[str, Any]], _Task] = {}
        self.executor: Executor | None = None

    def run(self) -> Tally:
        """Run to the end (or the budget); KeyboardInterrupt propagates after the workers are ended."""
        self.started = self.clock()
        self.executor = self.make_executor()
        try:
            while True:
                self._fill()
                if not self.inflight:
                    break
                done, _ = wait(list(self.inflight), timeout=POLL, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = self.inflight.pop(fut, None)
                    if task is not None:  # None: a broken pool's future, already resubmitted
                        self._collect(fut, task)
                self._show()
        except BaseException:
            stop(self.executor, list(self.inflight))
            self.executor = None
            raise
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=True)
        self.tally.not_started = len(self.queue)
        if self.display is not None:
            self.display.close()
        return self.tally

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _fill(self) -> None:
        while self.queue and len(self.inflight) < self.window:
            if self.budget and self.elapsed() >= self.budget:
                return
            task = self.queue.popleft()
            self._submit(task)

    def _submit(self, task: _Task) -> None:
        assert self.executor is not None
        try:
            fut = self.executor.submit(run_spec, task.spec)
        except BrokenExecutor:
            self._renew_executor()
            fut = self.executor.submit(run_spec, task.spec)
        self.inflight[fut] = task

    def _renew_executor(self) -> None:
        """The local pool broke (a worker died): every seed still in it gets another attempt on a new pool."""
        old, self.executor = self.executor, self.make_executor()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        stranded = list(self.inflight.items())
        self.inflight.clear()
        for fut, task in stranded:
            fut.cancel()
            self._retry_or_record(task, "a worker process died (pool broken)")

    def _collect(self, fut: Future[dict[str, Any]], task: _Task) -> None:
        try:
            row = fut.result()
        except BrokenExecutor:
            self._retry_or_record(task, "a worker process died (pool broken)")
            self._renew_executor()
            return
        except Exception as exc:  # the task or its worker failed: the seed gets another attempt
            self._retry_or_record(task, f"{type(exc).__name__}: {exc}")
            return
        self._record(row)

    def _retry_or_record(self, task: _Task, why: str) -> None:
        task.attempts += 1
        if task.attempts <= self.retries:
            self.tally.retried += 1
            self.queue.appendleft(task)
            return
        # its spec replays it too (the fault plan is drawn from the seed): to see what kills workers
        self._record({"seed": task.seed, "status": "error", "ok": False, "error": why,
                      "attempts": task.attempts, "run": task.spec})

    def _record(self, row: dict[str, Any]) -> None:
        spec = row.pop("run", None)
        if spec is not None:
            path = replay.write(self.replay_dir / str(row["seed"]), spec)
            row["replay"] = replay.command(row["seed"], path)
        self.out.write(json.dumps(row, sort_keys=True) + "\n")
        self.out.flush()
        self.tally.add(row)
        if self.display is not None and row["status"] != "ok":
            self.display.clear()
        if row["status"] == "failed":
            what = ", ".join(f"{k}={v}" for k, v in row["violations"].items())
            self.report(f"seed {row['seed']} FAILED ({what}) {row['first_violation']}")
            self.report(f"  replay: {row['replay']}")
        elif row["status"] == "error":
            self.report(f"seed {row['seed']} ERROR after {row['attempts']} attempts: {row['error']}")
            self.report(f"  replay: {row['replay']}")
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        if self.display is None:
            return
        t = self.tally
        self.display.update(f"[seeds] {t.done}/{t.total} done, {len(self.inflight)} running, "
                            f"{len(t.failed)} failed ({t.errors} errors), {t.retried} retried, "
                            f"wall {clock_text(self.elapsed())}, ETA {eta_text(t.done, t.total, self.elapsed())}",
                            force=force and self.display.mode == "tty")


def stop(executor: Executor | None, futures: list[Future[Any]]) -> None:
    """Cancel what has not started and end the workers now (Ctrl-C, or an error in the sweep)."""
    for fut in futures:
        fut.cancel()
    if executor is None:
        return
    # A process pool would otherwise let every running seed finish first (minutes on big
    # networks). Python 3.14 has terminate_workers(); before it, the pool's processes are only
    # reachable through its private table, which shutdown() clears: take them first.
    terminate = getattr(executor, "terminate_workers", None)
    if callable(terminate):
        terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
