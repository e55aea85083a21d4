"""``p2pauction demo``: the reference scenario (SPEC §1) on real local processes.

A bootstrap and three nodes C1, C2, C3 run as separate processes (``python -m p2pauction``) on
127.0.0.1, port 0, in a temporary directory. A ``watch --json`` process per node records its live
feed. The six steps are played through the CLI, one visible line each; after each step the demo
waits (poll with a timeout) until every node holds the same events. It then prints every node's
feed (own events marked ``own``, others' ``peer``) and each node's verdict, e.g.
``[C3] C2 wins Pic#1 at 80 USDt``. Exit status 0 only if every node agrees on that.

Every process is killed in a ``finally``, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMES = ("C1", "C2", "C3")
EXPECTED = "C2 wins Pic#1 at 80 USDt"


class DemoFailed(Exception):
    """A step failed or the nodes disagree; the message says which."""


@dataclass
class _Proc:
    name: str
    proc: asyncio.subprocess.Process
    log: Path


@dataclass
class _Demo:
    root: Path
    net: str
    timeout: float
    procs: list[_Proc] = field(default_factory=list)
    feeds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def data_dir(self, name: str) -> Path:
        return self.root / name

    # ------------------------------------------------------------------ processes

    async def spawn(self, name: str, *args: str, stdout: int | None = None) -> _Proc:
        log = self.root / f"{name}.log"
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "p2pauction", *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout if stdout is not None else err, stderr=err)
        entry = _Proc(name, proc, log)
        self.procs.append(entry)
        return entry

    async def first_line(self, entry: _Proc) -> dict[str, Any]:
        assert entry.proc.stdout is not None
        try:
            line = await asyncio.wait_for(entry.proc.stdout.readline(), self.timeout)
        except TimeoutError:
            raise DemoFailed(f"{entry.name} did not start within {self.timeout:g} s (see {entry.log})") from None
        if not line:
            raise DemoFailed(f"{entry.name} exited at start: {_tail(entry.log)}")
        return dict(json.loads(line))

    async def cli(self, name: str, *args: str) -> Any:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "p2pauction", *args, "--data-dir", str(self.data_dir(name)), "--json",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DemoFailed(f"`p2pauction {' '.join(args)}` on {name} timed out") from None
        if proc.returncode != 0:
            raise DemoFailed(f"`p2pauction {' '.join(args)}` on {name} failed: {err.decode().strip()}")
        return json.loads(out)

    async def kill_all(self) -> None:
        for entry in reversed(self.procs):
            if entry.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    entry.proc.send_signal(signal.SIGTERM)
        for entry in reversed(self.procs):
            try:
                await asyncio.wait_for(entry.proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    entry.proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(entry.proc.wait(), 5.0)

    # ------------------------------------------------------------------ polling

    async def poll(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not await check():
            if loop.time() > deadline:
                raise DemoFailed(f"timed out after {self.timeout:g} s waiting for {what}")
            await asyncio.sleep(0.1)  # polling interval of a bounded wait

    async def status(self, name: str) -> dict[str, Any]:
        from p2pauction.control import ControlClient

        return dict(await asyncio.to_thread(ControlClient(self.data_dir(name), timeout=10.0).call, "status"))

    async def agree(self, events: int) -> bool:
        statuses = [await self.status(n) for n in NAMES]
        return all(s["events"] == events for s in statuses) and len({s["digest"] for s in statuses}) == 1

    async def follow(self, entry: _Proc) -> None:
        assert entry.proc.stdout is not None
        feed = self.feeds.setdefault(entry.name.removeprefix("watch-"), [])
        while True:
            line = await entry.proc.stdout.readline()  # ends at EOF, when the watch is killed
            if not line:
                return
            with contextlib.suppress(ValueError):
                feed.append(json.loads(line))


@dataclass
class _Output:
    """Where the demo's lines go: text for people, or JSON lines (``demo --json``,
    docs/cli-output.schema.json ``$defs/demo_line``)."""

    json_lines: bool = False


_output = _Output()


def _say(text: str, line: str = "info", node: str | None = None, **fields: object) -> None:
    """Print one line; what it quotes (items, names, CLI errors) is made inert first.

    With ``--json`` the line is ``{"demo": line, "message": text, "node": node, ...fields}``
    (exact text: JSON escapes what a terminal would interpret).
    """
    from p2pauction.display import json_text, safe_text

    if _output.json_lines:
        print(json_text({"demo": line, "message": text, "node": node, **fields}), flush=True)
    else:
        print(safe_text(text), flush=True)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _start(demo: _Demo) -> None:
    boot = await demo.spawn("bootstrap", "bootstrap", "--listen", "127.0.0.1:0", "--net", demo.net, "--json",
                            "--data-dir", str(demo.data_dir("bootstrap")), "--log-format", "json",
                            stdout=asyncio.subprocess.PIPE)
    boot_addr = str((await demo.first_line(boot))["listen"])
    _say(f"bootstrap listening on {boot_addr}", "start", "bootstrap")
    nodes = [await demo.spawn(name, "node", "--data-dir", str(demo.data_dir(name)), "--listen", "127.0.0.1:0",
                              "--bootstrap", boot_addr, "--net", demo.net, "--name", name, "--json",
                              "--log-format", "json", "--set", "ae_interval=2",
                              stdout=asyncio.subprocess.PIPE) for name in NAMES]
    for entry in nodes:
        info = await demo.first_line(entry)
        _say(f"node {entry.name} listening on {info['listen']} (key {str(info['public_key'])[:12]}...)", "start",
             entry.name)

    async def meshed() -> bool:
        statuses = [await demo.status(n) for n in NAMES]
        return all(s["peers"] >= len(NAMES) - 1 for s in statuses)

    await demo.poll("the three nodes to connect to each other", meshed)
    _say("the three nodes are connected to each other", "start")


async def _scenario(demo: _Demo, tg: asyncio.TaskGroup) -> None:
    for name in NAMES:
        watch = await demo.spawn(f"watch-{name}", "watch", "--data-dir", str(demo.data_dir(name)), "--json",
                                 stdout=asyncio.subprocess.PIPE)
        tg.create_task(demo.follow(watch))

    async def watching() -> bool:  # a feed only shows events after it starts
        statuses = [await demo.status(n) for n in NAMES]
        return all(s["subscribers"] >= 1 for s in statuses)

    await demo.poll("the watchers to attach", watching)
    steps: list[tuple[str, str, tuple[str, ...]]] = [
        ("C1", "opens Pic#1 at 75 USDt", ("open", "Pic#1", "75", "--currency", "USDt")),
        ("C2", "opens Pic#2 at 60 USDt", ("open", "Pic#2", "60", "--currency", "USDt")),
        ("C2", "bids 75 on Pic#1", ("bid", "{pic1}", "75")),
        ("C3", "bids 75.5 on Pic#1", ("bid", "{pic1}", "75.5")),
        ("C2", "bids 80 on Pic#1", ("bid", "{pic1}", "80")),
        ("C1", "closes Pic#1", ("close", "{pic1}")),
    ]
    pic1 = ""
    for number, (who, what, args) in enumerate(steps, start=1):
        result = await demo.cli(who, *(a.format(pic1=pic1) for a in args))
        if number == 1:
            pic1 = str(result["auction_id"])
        outcome = f" -> {result['summary']}" if "summary" in result else ""
        _say(f"step {number}: {who} {what}{outcome}", "step", who)
        await demo.poll(f"every node to hold step {number}", _agree_on(demo, number))
    await demo.poll("every watch to stream the six events",
                    _feeds_complete(demo))
    _show_feeds(demo)
    await _verdicts(demo, pic1)


def _agree_on(demo: _Demo, events: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await demo.agree(events)

    return check


def _feeds_complete(demo: _Demo) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(len(demo.feeds.get(n, [])) >= 6 for n in NAMES)

    return check


def _show_feeds(demo: _Demo) -> None:
    from p2pauction.render import render_notification

    for name in NAMES:
        if not _output.json_lines:
            _say(f"--- {name}'s feed (own events and peers' events) ---")
        for note in demo.feeds.get(name, []):
            _say(f"  {render_notification(note)}", "feed", name, notification=note)


async def _verdicts(demo: _Demo, pic1: str) -> None:
    failures = []
    for name in NAMES:
        view = await demo.cli(name, "show", pic1)
        winner = view.get("winner") or {}
        verdict = (f"{winner.get('name') or str(winner.get('bidder', '?'))[:8]} wins {view['item']} at "
                   f"{view.get('price')} {view['currency']}" if view.get("status") == "closed"
                   else f"{view['item']} is {str(view.get('status')).upper()}")
        _say(f"[{name}] {verdict}", "verdict", name, agrees=verdict == EXPECTED)
        if verdict != EXPECTED:
            failures.append(f"{name} says {verdict!r}")
    if failures:
        raise DemoFailed("the nodes do not agree: " + "; ".join(failures))


async def _main(net: str, timeout: float, root: Path) -> int:
    demo = _Demo(root=root, net=net, timeout=timeout)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        await _start(demo)
        async with asyncio.TaskGroup() as tg:
            try:
                await _scenario(demo, tg)
            finally:
                await demo.kill_all()  # also ends the feed readers (EOF)
        _say(f"every node agrees: {EXPECTED}", "result", ok=True)
        return 0
    except (DemoFailed, ExceptionGroup) as exc:
        failures = _demo_failures(exc)
        if failures is None:
            raise
        from p2pauction.display import safe_text

        for failure in failures:
            print(f"demo failed: {safe_text(str(failure))}", file=sys.stderr)
        if _output.json_lines:
            _say("demo failed", "result", ok=False)
        return 1
    finally:
        await demo.kill_all()
        loop.remove_signal_handler(signal.SIGTERM)


def _demo_failures(exc: BaseException) -> list[DemoFailed] | None:
    """The DemoFailed errors inside ``exc`` (a TaskGroup wraps them); None if anything else is there."""
    if isinstance(exc, DemoFailed):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        out: list[DemoFailed] = []
        for inner in exc.exceptions:
            found = _demo_failures(inner)
            if found is None:
                return None
            out.extend(found)
        return out
    return None


def run_demo(net: str = "p2pauction-demo", timeout: float = 60.0, keep: bool = False,
             json_lines: bool = False) -> int:
    """Run the demo; returns the exit status. Processes are cleaned up whatever happens.

    ``json_lines``: every line is a JSON object (``--json``), feed lines carry the notification.
    """
    _output.json_lines = json_lines
    root = Path(tempfile.mkdtemp(prefix="p2pauction-demo-"))
    _say(f"demo: processes and their logs in {root}", "start", directory=str(root))
    try:
        return asyncio.run(_main(net, timeout, root))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("demo interrupted; processes stopped", file=sys.stderr)
        return 130
    finally:
        if keep:
            _say(f"kept {root}", "info", directory=str(root))
        else:
            shutil.rmtree(root, ignore_errors=True)
