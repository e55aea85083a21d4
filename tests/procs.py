"""Helpers for tests that run real p2pauction processes on 127.0.0.1, port 0.

Reusable by every integration test::

    with Cluster(tmp_path) as cluster:
        boot = cluster.bootstrap()
        c1 = cluster.node("C1")
        c2 = cluster.node("C2")
        aid = cli(c1.data_dir, "open", "Pic#1", "75").data["auction_id"]
        wait_until(lambda: query(c2.data_dir, "status")["events"] == 1, 20, "C2 has the open")

Everything a test starts is killed when the Cluster exits (or by :func:`stop`/:func:`kill`).
Addresses are read from the data directory (``node.json`` / ``bootstrap.json``), never guessed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.cli_schema import OP_COMMANDS, command_of, validate_output

T = TypeVar("T")

PYTHON = sys.executable
START_TIMEOUT = 30.0
CLI_TIMEOUT = 30.0
# Faster-than-default timers so tests converge in seconds; loopback is exempt from per-IP caps.
FAST_SETTINGS: tuple[str, ...] = ("ae_interval=1", "heartbeat_interval=1", "exempt_ips=127.0.0.1")


def p2pauction_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "p2pauction", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("P2PAUCTION_DATA_DIR", None)  # tests always pass --data-dir
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """A started process: the node or bootstrap it runs, its data directory and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    data_dir: Path | None = None
    address: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    data: Any = None          # parsed JSON of stdout when --json was given and it parsed

    @property
    def ok(self) -> bool:
        return self.returncode == 0


# --------------------------------------------------------------------------- polling


def wait_until(predicate: Callable[[], T | None], timeout: float, message: str = "condition",
               interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError on timeout.

    Exceptions from the predicate count as "not yet" (a node may still be starting), and the last
    one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not ready yet
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}{detail}")
        time.sleep(interval)


def ddir(node: Proc) -> Path:
    """A node process's data directory (every node has one; a bootstrap may not)."""
    assert node.data_dir is not None, f"{node.name} has no data directory"
    return node.data_dir


def read_info(directory: Path, filename: str = "node.json") -> dict[str, Any]:
    return dict(json.loads((directory / filename).read_text()))


def read_address(data_dir: Path) -> str:
    """The real listen address a running node wrote in its data directory."""
    return str(read_info(data_dir)["listen"])


# --------------------------------------------------------------------------- processes


def _spawn(name: str, args: Sequence[str], log: Path) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(p2pauction_cmd(*args), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    return Proc(name=name, popen=popen, log=log)


def _wait_info(proc: Proc, directory: Path, filename: str, timeout: float) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        if not proc.alive():
            raise RuntimeError("exited")
        info = read_info(directory, filename)
        return info if info.get("pid") == proc.pid else None

    try:
        return wait_until(ready, timeout, f"{proc.name} to start")
    except AssertionError:
        kill(proc)
        raise AssertionError(f"{proc.name} did not start (exit {proc.popen.returncode}):\n{proc.log_tail()}") from None


def start_bootstrap(directory: Path, *, net: str = "p2pauction-test", name: str = "bootstrap",
                    timeout: float = START_TIMEOUT, extra: Sequence[str] = ()) -> Proc:
    """A discovery node on 127.0.0.1:0; its real address is read from ``bootstrap.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    proc = _spawn(name, ["bootstrap", "--listen", "127.0.0.1:0", "--net", net, "--data-dir", str(directory),
                         "--log-format", "json", *extra], directory / f"{name}.log")
    proc.data_dir = directory
    proc.info = _wait_info(proc, directory, "bootstrap.json", timeout)
    proc.address = str(proc.info["listen"])
    return proc


def start_node(data_dir: Path, *, name: str | None = None, bootstraps: Sequence[str] = (),
               net: str = "p2pauction-test", settings: Sequence[str] = FAST_SETTINGS,
               extra: Sequence[str] = (), timeout: float = START_TIMEOUT, offline: bool = False) -> Proc:
    """A node process on 127.0.0.1:0; returns once node.json names it and its control socket answers."""
    args = ["node", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--net", net, "--log-format", "json"]
    if name:
        args += ["--name", name]
    for addr in bootstraps:
        args += ["--bootstrap", addr]
    for setting in settings:
        args += ["--set", setting]
    if offline:
        args.append("--offline")
    args += list(extra)
    proc = _spawn(name or data_dir.name, args, data_dir.parent / f"{data_dir.name}.log")
    proc.data_dir = data_dir
    proc.info = _wait_info(proc, data_dir, "node.json", timeout)
    proc.address = proc.info.get("listen")
    wait_until(lambda: query(data_dir, "ping")["pid"] == proc.pid, timeout, f"{proc.name}'s control socket")
    return proc


def stop(proc: Proc, timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit status."""
    if proc.alive():
        proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    return kill(proc)


def kill(proc: Proc, timeout: float = 10.0) -> int:
    """SIGKILL (as a crash would) and reap."""
    if proc.alive():
        proc.popen.kill()
    return proc.popen.wait(timeout)


# --------------------------------------------------------------------------- clients


def cli(data_dir: Path | None, *args: str, json_out: bool = True, check: bool = True,
        timeout: float = CLI_TIMEOUT, env: dict[str, str] | None = None) -> CliResult:
    """Run ``p2pauction ARGS --data-dir DIR [--json]`` and capture it.

    ``check``: assert the exit status is 0 (with stderr in the message).
    """
    full = list(args)
    if data_dir is not None:
        full += ["--data-dir", str(data_dir)]
    if json_out:
        full.append("--json")
    run_env = _env()
    if env:
        run_env.update(env)
    done = subprocess.run(p2pauction_cmd(*full), capture_output=True, text=True, timeout=timeout,
                          env=run_env, stdin=subprocess.DEVNULL)
    result = CliResult(done.returncode, done.stdout, done.stderr)
    if json_out and done.returncode == 0 and done.stdout.strip():
        result.data = _parse_json_output(args, done.stdout)
    if check:
        assert result.ok, f"p2pauction {' '.join(full)} failed ({done.returncode}): {done.stderr.strip()}"
    return result


def _parse_json_output(args: Sequence[str], stdout: str) -> Any:
    """The parsed ``--json`` output, validated against docs/cli-output.schema.json.

    Commands that print lines (watch, demo, node, bootstrap) give a list of objects, each
    validated; the others one JSON document.
    """
    command = command_of(args)
    if command in LINE_COMMANDS:
        lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        for line in lines:
            validate_output(command, line)
        return lines
    data = json.loads(stdout)
    if command is not None:
        validate_output(command, data)
    return data


LINE_COMMANDS = ("watch", "demo", "node", "bootstrap")


def query(data_dir: Path, op: str, **args: Any) -> Any:
    """One control-socket request in-process (fast polling, no interpreter start-up); the reply
    is validated against the schema of the command that asks for it."""
    from p2pauction.control import ControlClient

    reply = ControlClient(data_dir, timeout=10.0).call(op, **args)
    if op in OP_COMMANDS:
        validate_output(OP_COMMANDS[op], reply)
    return reply


def digest(data_dir: Path) -> str:
    return str(query(data_dir, "status")["digest"])


def wait_converged(data_dirs: Sequence[Path], events: int | None = None, timeout: float = 30.0) -> str:
    """Wait until every node has the same digest (and ``events`` events, if given); return it."""
    def same() -> str | None:
        statuses = [query(d, "status") for d in data_dirs]
        digests = {s["digest"] for s in statuses}
        if len(digests) != 1 or (events is not None and any(s["events"] != events for s in statuses)):
            return None
        return str(statuses[0]["digest"])

    return wait_until(same, timeout, f"{len(data_dirs)} nodes to converge")


class Watch:
    """A ``p2pauction watch --json`` process whose lines are collected (read on demand)."""

    def __init__(self, data_dir: Path, auction: str | None = None, *extra: str) -> None:
        args = ["watch"] + ([auction] if auction else []) + ["--data-dir", str(data_dir), "--json", *extra]
        self.popen = subprocess.Popen(p2pauction_cmd(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=_env(), start_new_session=True)
        os.set_blocking(self.popen.stdout.fileno(), False)  # type: ignore[union-attr]
        self._buffer = b""
        self.lines: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        """Read whatever the watch printed so far; returns every line seen."""
        assert self.popen.stdout is not None
        try:
            chunk = self.popen.stdout.read()
        except BlockingIOError:
            chunk = None
        if chunk:
            self._buffer += chunk
            *complete, self._buffer = self._buffer.split(b"\n")
            for line in complete:
                if line.strip():
                    note = json.loads(line)
                    validate_output("watch", note)
                    self.lines.append(note)
        return self.lines

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        return wait_until(lambda: self.poll() if len(self.poll()) >= count else None, timeout,
                          f"watch to print {count} lines")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


class Cluster:
    """Processes started for one test; all of them are killed on exit, whatever happened."""

    def __init__(self, root: Path, net: str = "p2pauction-test") -> None:
        self.root = root
        self.net = net
        self.procs: list[Proc] = []
        self.watches: list[Watch] = []
        self.boot: Proc | None = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bootstrap(self, **kwargs: Any) -> Proc:
        self.boot = start_bootstrap(self.root / "bootstrap", net=self.net, **kwargs)
        self.procs.append(self.boot)
        return self.boot

    def node(self, name: str, *, bootstrap: bool = True, **kwargs: Any) -> Proc:
        boots = [self.boot.address] if bootstrap and self.boot is not None and self.boot.address else []
        proc = start_node(self.root / name, name=name, bootstraps=kwargs.pop("bootstraps", boots),
                          net=self.net, **kwargs)
        self.procs.append(proc)
        return proc

    def watch(self, node: Proc, auction: str | None = None, *extra: str) -> Watch:
        assert node.data_dir is not None
        watch = Watch(node.data_dir, auction, *extra)
        self.watches.append(watch)
        return watch

    def close(self) -> None:
        for watch in self.watches:
            watch.stop()
        for proc in reversed(self.procs):
            try:
                stop(proc, timeout=5.0)
            except Exception:
                kill(proc)
