"""The simulator as a tool (issue 16): replay.json, sweeps on any executor (local pool, Dask),
progress, Ctrl-C, and the report's plot."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest

from simulations import replay
from simulations.cli import main as cli_main
from simulations.nodes import Hooks
from simulations.progress import Display, eta_text
from simulations.report import nodes_down, plot_title
from simulations.seeds import acceptance_spec
from simulations.sweep import Sweep, percentile
from tests.test_sim_acceptance import SkipsIncrementReplica

ROOT = Path(__file__).resolve().parents[1]

# Planted bug for the sweep tests, found by import path (workers and replays import it the same way)
PLANTED = Hooks(replica_class=lambda node: SkipsIncrementReplica)
PLANTED_REF = "tests.test_sim_tooling:PLANTED"

TINY = ["--nodes", "4", "--events", "6"]   # a seed of the acceptance mix in ~0.1 s CPU


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _cli(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=240, **kw)


def _replay_command(text: str) -> list[str]:
    """The argv of the last ``replay: python -m simulations ...`` line of ``text``."""
    line = [x for x in text.splitlines() if x.strip().startswith("replay: ")][-1]
    argv = shlex.split(line.split("replay: ", 1)[1])
    assert argv[:3] == ["python", "-m", "simulations"] and "--seed" in argv, line
    return argv[1:]


def _trace(stdout: str) -> str:
    return str(json.loads(next(x for x in stdout.splitlines() if x.startswith("{")))["trace_hash"])


def _wait_for(path: Path, needle: str, proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    """Poll ``path`` until it holds ``needle`` (or the process ended, or the time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{needle!r} never appeared in {path}: {path.read_text() if path.exists() else ''}")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --- replay.json -------------------------------------------------------------------------------

def test_every_run_writes_replay_json_whose_command_reproduces_the_trace_hash(tmp_path: Path) -> None:
    p = _cli(["-m", "simulations", "run", "--nodes", "8", "--events", "30", "--seed", "1", "--loss", "0.05",
              "--partition", "symmetric:2-6", "--crash", "0.3", "--hostile", "1:3", "--progress", "off",
              "--json", "--report", str(tmp_path / "first")])
    assert p.returncode == 0, p.stdout + p.stderr
    spec = json.loads((tmp_path / "first" / "replay.json").read_text())
    plan = spec["faults"]["plan"]
    # the concrete crash and hostile times that --crash / --hostile only drew are in the file
    assert plan["crashes"] and all("at" in c and "down_for" in c for c in plan["crashes"])
    assert plan["hostile"] and plan["hostile_nodes"] == 1
    argv = _replay_command(p.stdout)
    assert argv[argv.index("--seed") + 1] == "1"   # the default seed is spelled out too
    again = _cli(argv + ["--json", "--progress", "off", "--report", str(tmp_path / "again")])
    assert again.returncode == 0, again.stdout + again.stderr
    assert _trace(again.stdout) == _trace(p.stdout)
    # and report.json carries the same spec: --plan report.json replays exactly that run
    from_report = _cli(["-m", "simulations", "run", "--plan", str(tmp_path / "first" / "report.json"), "--json",
                        "--progress", "off", "--report", str(tmp_path / "third")])
    assert _trace(from_report.stdout) == _trace(p.stdout)


def test_a_run_without_report_saves_replay_json_under_sim_runs(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "simulations", "run", "--nodes", "3", "--events", "6",
                        "--seed", "4", "--progress", "off"], cwd=tmp_path, env=_env(), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    saved = list((tmp_path / "sim-runs").glob("4-*/replay.json"))
    assert len(saved) == 1
    assert f"--plan {saved[0].relative_to(tmp_path)}" in p.stdout


def test_plan_refuses_what_would_replay_a_different_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--nodes", "4", "--events", "6", "--seed", "3", "--progress", "off",
                     "--report", str(tmp_path)]) == 0
    capsys.readouterr()
    # a flag next to a full spec
    assert cli_main(["run", "--plan", str(tmp_path / "replay.json"), "--nodes", "9"]) == 2
    assert "fixes every parameter" in capsys.readouterr().err
    # another seed
    assert cli_main(["run", "--seed", "4", "--plan", str(tmp_path / "replay.json")]) == 2
    assert "replays only its own seed" in capsys.readouterr().err
    # a report from before run specs existed: its plan alone would run with today's defaults
    old = json.loads((tmp_path / "report.json").read_text())
    del old["run"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert cli_main(["run", "--seed", "3", "--plan", str(tmp_path / "old.json")]) == 2
    assert "no \"run\" spec" in capsys.readouterr().err


def test_run_spec_round_trips() -> None:
    spec = acceptance_spec(5, 6, 10, 60.0, hooks=PLANTED_REF)
    cfg = replay.config_of(spec)
    assert cfg.hooks is PLANTED and cfg.nodes == 6 and cfg.bound == 60.0
    assert replay.spec_of(cfg, hooks=PLANTED_REF) == spec
    with pytest.raises(Exception, match="unknown keys"):
        replay.config_of(dict(spec, extra=1))


# --- sweeps ----------------------------------------------------------------------------------------

def test_planted_failing_seed_in_a_sweep_prints_a_replay_that_reproduces_its_trace(tmp_path: Path) -> None:
    out = tmp_path / "seeds.jsonl"
    p = _cli(["-m", "simulations.seeds", "--count", "2", *TINY, "--jobs", "2", "--out", str(out),
              "--hooks", PLANTED_REF, "--progress", "off"])
    assert p.returncode == 1, p.stdout + p.stderr
    rows = {r["seed"]: r for r in _jsonl(out)}
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert failed and all("invalid_event_accepted" in r["violations"] for r in failed), rows
    row = failed[0]
    assert f"replay: {row['replay']}" in p.stdout
    argv = _replay_command(f"replay: {row['replay']}")
    again = _cli(argv + ["--json", "--progress", "off", "--report", str(tmp_path / "again")])
    assert again.returncode == 1 and "invalid_event_accepted" in again.stdout
    assert _trace(again.stdout) == row["trace_hash"]


def test_sweep_streams_lines_and_summarises_and_budget_holds_with_jobs(tmp_path: Path) -> None:
    out = tmp_path / "seeds.jsonl"
    p = _cli(["-m", "simulations.seeds", "--count", "60", *TINY, "--jobs", "2", "--out", str(out),
              "--budget", "0.5", "--progress", "off"])
    assert p.returncode == 0, p.stdout + p.stderr
    rows = _jsonl(out)
    # the first window starts at once; the budget stops the rest from starting
    assert 1 <= len(rows) < 60 and all(r["status"] == "ok" for r in rows)
    assert f"{len(rows)} of 60 ({60 - len(rows)} not started)" in p.stdout
    assert "convergence after heal (s)" in p.stdout and "p99" in p.stdout


def test_local_pool_survives_a_killed_worker(tmp_path: Path) -> None:
    out = tmp_path / "seeds.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "simulations.seeds", "--count", "40", *TINY, "--jobs", "2",
                             "--out", str(out), "--progress", "off"], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out, '"seed": ', proc)
        # the sweep's only children are its pool's worker processes
        workers = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert workers
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, stdout + stderr
    seeds = sorted(r["seed"] for r in _jsonl(out))
    assert seeds == list(range(1, 41)), seeds


class _LosesFirstAttempts(Executor):
    """Runs tasks in this thread, except that the first ``lose`` submissions fail as if their worker died."""

    def __init__(self, lose: int) -> None:
        self.lose = lose

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        if self.lose > 0:
            self.lose -= 1
            fut.set_exception(RuntimeError("worker lost"))
        else:
            fut.set_result(fn(*args, **kwargs))
        return fut


def test_a_lost_seed_is_retried_then_recorded_as_an_error_with_a_replay(tmp_path: Path) -> None:
    spec = acceptance_spec(1, 4, 6, 120.0)
    out = io.StringIO()
    flaky = _LosesFirstAttempts(lose=2)
    tally = Sweep([(1, spec)], lambda: flaky, out=out, replay_dir=tmp_path, window=2, retries=2,
                  report=lambda line: None).run()
    assert (tally.ok, tally.errors, tally.retried) == (1, 0, 2)
    out = io.StringIO()
    lines: list[str] = []
    never = _LosesFirstAttempts(lose=10)
    tally = Sweep([(1, spec)], lambda: never, out=out, replay_dir=tmp_path, window=2, retries=2,
                  report=lines.append).run()
    row = json.loads(out.getvalue())
    assert (tally.errors, tally.retried, row["status"], row["attempts"]) == (1, 2, "error", 3)
    assert never.lose == 7 and lines[-1] == f"  replay: {row['replay']}"
    assert json.loads((tmp_path / "1" / "replay.json").read_text()) == json.loads(json.dumps(spec))


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50.0, 90.0, 99.0)
    assert percentile([3.0], 99) == 3.0


# --- progress ------------------------------------------------------------------------------------

class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_redraws_one_line_on_a_terminal_and_prints_plain_lines_otherwise() -> None:
    now = [0.0]
    tty_out, plain_out, off_out = _Stream(True), _Stream(False), _Stream(True)
    tty = Display("auto", stream=tty_out, clock=lambda: now[0])
    plain = Display("auto", stream=plain_out, every=10.0, clock=lambda: now[0])
    assert (tty.mode, plain.mode) == ("tty", "lines")
    for step in range(1, 41):          # 20 s of updates, one every half second
        now[0] = step * 0.5
        tty.update(f"a{step}")
        plain.update(f"b{step}")
    tty.close()
    shown = tty_out.getvalue()
    assert shown.count("\r\x1b[K") == 40 and shown.endswith("a40\n") and "\n" not in shown[:-1]
    assert plain_out.getvalue() == "b20\nb40\n"
    off = Display("off", stream=off_out)
    off.update("x", force=True)
    assert off_out.getvalue() == ""


def test_eta_text() -> None:
    assert eta_text(0, 10, 5.0) == "?"
    assert eta_text(5, 10, 30.0) == "0:30"
    assert eta_text(1, 61, 60.0) == "1:00:00"


# --- Ctrl-C --------------------------------------------------------------------------------------

def test_ctrl_c_stops_a_run_with_one_line_and_exit_130(tmp_path: Path) -> None:
    err = tmp_path / "stderr.txt"
    with err.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "simulations", "run", "--nodes", "150", "--events", "600",
                                 "--progress", "lines", "--progress-every", "0.2", "--report", str(tmp_path / "r")],
                                cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=fh, text=True)
        try:
            _wait_for(err, "[sim]", proc)
            proc.send_signal(signal.SIGINT)
            stdout, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
    text = err.read_text()
    assert proc.returncode == 130, text + stdout
    assert "Traceback" not in text
    last = [x for x in text.splitlines() if x.startswith("interrupted: ")]
    assert len(last) == 1 and "partial results kept in" in last[0] and "--seed 1" in last[0]
    partial = json.loads((tmp_path / "r" / "report.json").read_text())
    assert partial["interrupted"] is True
    assert (tmp_path / "r" / "replay.json").exists()


def test_one_ctrl_c_stops_a_sweep_with_two_jobs(tmp_path: Path) -> None:
    err = tmp_path / "stderr.txt"
    out = tmp_path / "seeds.jsonl"
    with err.open("w") as fh:
        # its own session: SIGINT to the whole group, as a terminal's Ctrl-C reaches the workers too
        proc = subprocess.Popen([sys.executable, "-m", "simulations.seeds", "--count", "200", "--nodes", "60",
                                 "--events", "100", "--jobs", "2", "--out", str(out), "--progress", "lines",
                                 "--progress-every", "0.2"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                stderr=fh, text=True, start_new_session=True)
        try:
            _wait_for(err, "[seeds]", proc)
            os.killpg(proc.pid, signal.SIGINT)
            stdout, _ = proc.communicate(timeout=20)   # not the minutes the running seeds would take
        finally:
            proc.kill()
    text = err.read_text()
    assert proc.returncode == 130, text + stdout
    assert "Traceback" not in text
    assert [x for x in text.splitlines() if x.startswith("interrupted: ")] == [
        next(x for x in text.splitlines() if x.startswith("interrupted: "))]
    assert f"partial results kept in {out}" in text and out.exists()


# --- Dask ----------------------------------------------------------------------------------------

def test_dask_sweep_same_trace_hashes_as_local_pool_and_loses_no_seed_to_a_killed_worker(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed (the cluster extra)")
    count = 200
    local = tmp_path / "local.jsonl"
    p = _cli(["-m", "simulations.seeds", "--count", str(count), *TINY, "--jobs", "2", "--out", str(local),
              "--progress", "off"])
    assert p.returncode == 0, p.stdout + p.stderr
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"PYTHONPATH": _env()["PYTHONPATH"]}) as cluster, \
            distributed.Client(cluster) as client:
        out = tmp_path / "dask.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "simulations.seeds", "--count", str(count), *TINY,
                                 "--scheduler", cluster.scheduler_address, "--out", str(out), "--progress", "off"],
                                cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(out, '"seed": 20,', proc)
            victim = next(iter(client.run(os.getpid).values()))
            os.kill(victim, signal.SIGKILL)
            stdout, stderr = proc.communicate(timeout=240)
        finally:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr
    dask_rows = {r["seed"]: r["trace_hash"] for r in _jsonl(out)}
    local_rows = {r["seed"]: r["trace_hash"] for r in _jsonl(local)}
    assert sorted(dask_rows) == list(range(1, count + 1))
    assert dask_rows == local_rows


# --- the report's plot -----------------------------------------------------------------------------

def test_crashes_become_one_nodes_down_step_line() -> None:
    windows = [(1.0, 5.0, "crash"), (2.0, 3.0, "crash"), (2.0, 8.0, "partition:symmetric"), (3.0, 4.0, "crash")]
    assert nodes_down(windows) == [(0.0, 0), (1.0, 1), (2.0, 2), (3.0, 2), (4.0, 1), (5.0, 0)]


def test_plot_title_names_loss_and_hostile_activity() -> None:
    s = {"seed": 3, "nodes": 10, "scenario": "random", "net": {"loss": 0.1, "dup": 0.0, "reorder": 0.05},
         "hostile_nodes": 2, "hostile_acts": {"low_bid": 3, "garbage": 2, "late_bid_skipped": 4}}
    title = plot_title(s)
    assert "loss 0.1" in title and "2 hostile nodes, 5 hostile acts" in title


def test_report_has_timeline_and_two_panel_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["run", "--nodes", "8", "--events", "20", "--seed", "2", "--crash", "0.3",
                   "--partition", "symmetric:2-6", "--progress", "off", "--report", str(tmp_path)])
    assert rc == 0, capsys.readouterr().out
    data = json.loads((tmp_path / "report.json").read_text())
    timeline = data["timeline"]
    assert len(timeline) > 10 and max(links for _, _, links in timeline) > 0
    assert all(pending > 0 for _, pending, _ in timeline)
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (the plot extra): coverage.png is not drawn")
    import matplotlib.image

    img = matplotlib.image.imread(str(tmp_path / "coverage.png"))
    assert img.shape[0] > img.shape[1] * 0.6   # two stacked panels: taller than the old single one


def test_a_sweep_passes_its_gossip_settings_to_every_run_and_its_replay() -> None:
    from simulations.seeds import parser as seeds_parser

    args = seeds_parser().parse_args(["--set", "reconcile=riblt", "--set", "source_parents=8"])
    assert dict(args.set) == {"reconcile": "riblt", "source_parents": 8}
    spec = acceptance_spec(1, 4, 6, 120.0, overrides=dict(args.set))
    cfg = replay.config_of(json.loads(json.dumps(spec)))     # as replay.json carries it
    assert cfg.core_overrides == {"reconcile": "riblt", "source_parents": 8}
    assert replay.config_of(acceptance_spec(1, 4, 6, 120.0)).core_overrides == {}
