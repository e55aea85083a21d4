"""``p2pauction demo``: the reference scenario end to end, and its clean-up on Ctrl-C / SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli_schema import validate_output
from tests.procs import p2pauction_cmd, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_demo_every_node_reports_c2_wins() -> None:
    done = subprocess.run(p2pauction_cmd("demo", "--timeout", "60"), capture_output=True, text=True,
                          timeout=150, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in ("C1", "C2", "C3"):
        assert f"[{name}] C2 wins Pic#1 at 80 USDt" in lines
    assert [line.split(":")[0] for line in lines if line.startswith("step ")] == [f"step {i}" for i in range(1, 7)]
    assert "step 6: C1 closes Pic#1 -> C2 wins Pic#1 at 80 USDt" in lines
    # each feed shows own and others' events: 6 lines per node, own ones marked
    feed_lines = [line for line in lines if "[own ]" in line or "[peer]" in line]
    assert len(feed_lines) == 18
    assert sum("[own ]" in line for line in feed_lines) == 6


def test_demo_json_lines_match_the_schema() -> None:
    done = subprocess.run(p2pauction_cmd("demo", "--timeout", "60", "--json"), capture_output=True, text=True,
                          timeout=150, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    for line in lines:
        validate_output("demo", line)
    assert [(x["node"], x["agrees"]) for x in lines if x["demo"] == "verdict"] == [
        ("C1", True), ("C2", True), ("C3", True)]
    assert len([x for x in lines if x["demo"] == "feed"]) == 18
    assert (lines[-1]["demo"], lines[-1]["ok"]) == ("result", True)


def _pids(root: Path) -> list[int]:
    pids = []
    for info in list(root.glob("*/node.json")) + list(root.glob("*/bootstrap.json")):
        pids.append(int(json.loads(info.read_text())["pid"]))
    return pids


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie would be reaped by its parent (the demo); it must not stay running
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_interrupted_kills_its_processes(sig: signal.Signals) -> None:
    demo = subprocess.Popen(p2pauction_cmd("demo", "--keep"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    try:
        assert demo.stdout is not None
        first = demo.stdout.readline()
        match = re.search(r"logs in (\S+)", first)
        assert match, first
        root = Path(match.group(1))
        while "connected" not in (line := demo.stdout.readline()):
            assert line, "the demo ended before its nodes connected"
        pids = _pids(root)
        assert len(pids) == 4
        demo.send_signal(sig)
        assert demo.wait(30) != 0
        wait_until(lambda: all(_dead(p) for p in pids), 15, "the demo's processes to exit")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        if 'root' in locals():
            import shutil

            shutil.rmtree(root, ignore_errors=True)
