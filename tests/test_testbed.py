"""The real network test bed (issue 7): namespace plumbing, and a small scenario on real nodes.

Runs only where network namespaces can actually be built (root, iproute2, a kernel that allows
them): the probe creates and deletes one. Elsewhere every test here is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.netns import (
    NS_RE, LinkProfile, NetnsError, Testbed, cleanup_leftovers, kill_namespace, list_namespaces, probe_netns,
    run_cmd,
)

pytestmark = pytest.mark.netns

# A one-file TCP echo server and a client that measures round trips; the client polls the
# connection (bounded by its own timeout) instead of sleeping for the server to come up.
ECHO = r"""
import asyncio, json, sys, time
async def serve(host, port):
    async def echo(r, w):
        while data := await r.read(65536):
            w.write(data); await w.drain()
        w.close()
    server = await asyncio.start_server(echo, host, port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()
async def client(host, port, count, size, timeout):
    loop = asyncio.get_running_loop(); deadline = loop.time() + timeout
    while True:
        try:
            left = max(0.1, deadline - loop.time())
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), left)
            break
        except (OSError, asyncio.TimeoutError) as exc:
            if loop.time() >= deadline:
                print(json.dumps({"ok": False, "error": repr(exc)})); return
            await asyncio.sleep(0.1)
    rtts = []
    for _ in range(count):
        t = time.monotonic(); w.write(b"x" * size); await w.drain()
        await asyncio.wait_for(r.readexactly(size), timeout); rtts.append(time.monotonic() - t)
    w.close()
    print(json.dumps({"ok": True, "min_rtt": min(rtts), "max_rtt": max(rtts)}))
if sys.argv[1] == "serve":
    asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
else:
    asyncio.run(client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])))
"""


@pytest.fixture(scope="module")
def netns() -> None:
    reason = probe_netns()
    if reason is not None:
        pytest.skip(f"network test bed unavailable: {reason}")


def _root_net_state() -> tuple[str, str, str]:
    """The root namespace's links, addresses and routes: the test bed must leave them alone."""
    links = run_cmd(["ip", "-br", "link"])
    addrs = run_cmd(["ip", "-br", "addr"])
    routes = run_cmd(["ip", "route", "show", "table", "all"])
    return links, addrs, routes


def _echo(tb: Testbed, src_idx: int, dst_idx: int, *, count: int = 3, size: int = 100,
          timeout: float = 10.0) -> dict[str, object]:
    src, dst = tb.hosts[src_idx], tb.hosts[dst_idx]
    argv = tb.exec_argv(src, [sys.executable, "-c", ECHO, "client", dst.addr, "9000",
                              str(count), str(size), str(timeout)])
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout * 3 + 30)
    assert res.returncode == 0, res.stderr
    out: dict[str, object] = json.loads(res.stdout)
    return out


@pytest.fixture
def bed(netns: None) -> Iterator[Testbed]:
    with Testbed(3, seed=7) as tb:
        server = subprocess.Popen(
            tb.exec_argv(tb.hosts[0], [sys.executable, "-c", ECHO, "serve", tb.hosts[0].addr, "9000"]),
            stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "listening"
            yield tb
        finally:
            server.kill()
            server.wait(timeout=10)
            if server.stdout is not None:
                server.stdout.close()


def test_hosts_talk_over_shaped_links_and_partitions_cut_and_heal(bed: Testbed) -> None:
    tb = bed
    assert all(NS_RE.match(h.ns) and h.ns.startswith(tb.prefix + "-") for h in tb.hosts)
    assert len({h.addr for h in tb.hosts}) == 3
    assert _echo(tb, 1, 0)["ok"] is True
    assert _echo(tb, 2, 0, size=200_000)["ok"] is True  # GSO-sized frames cross the switch

    tb.set_profile(LinkProfile(delay_ms=40, jitter_ms=0, loss=0))
    shaped = _echo(tb, 1, 0)
    assert shaped["ok"] is True
    # Each direction is delayed once by the sender's link: a round trip cannot be faster.
    assert float(shaped["min_rtt"]) >= 0.079  # type: ignore[arg-type]

    tb.set_profile(LinkProfile())
    tb.partition([tb.hosts[0]], [tb.hosts[2]])
    assert _echo(tb, 2, 0, timeout=2.0)["ok"] is False
    assert _echo(tb, 1, 0)["ok"] is True  # the other pair is untouched
    tb.heal()
    assert _echo(tb, 2, 0)["ok"] is True


def test_loss_drops_frames_yet_tcp_delivers(bed: Testbed) -> None:
    tb = bed
    tb.set_profile(LinkProfile(delay_ms=0, jitter_ms=0, loss=0.15))
    before = tb.wire_stats() if tb.mode == "wire" else {}
    assert _echo(tb, 1, 0, count=20, timeout=30.0)["ok"] is True
    if tb.mode == "wire":
        after = tb.wire_stats()
        assert int(after["lost"]) > int(before["lost"])  # type: ignore[call-overload]
    else:
        stats = run_cmd(["tc", "-n", tb.hosts[1].ns, "-s", "qdisc", "show", "dev", "eth0"])
        assert "netem" in stats


def test_teardown_removes_every_namespace_and_leaves_the_root_namespace_alone(netns: None) -> None:
    root_before = _root_net_state()
    with Testbed(2, seed=1) as tb:
        prefix = tb.prefix + "-"
        names = {h.ns for h in tb.hosts} | {tb.switch_ns}
        assert names <= set(list_namespaces())
        tb.partition([tb.hosts[0]], [tb.hosts[1]])
        # A process left running inside a host must not keep its namespace alive.
        subprocess.Popen(tb.exec_argv(tb.hosts[0], [sys.executable, "-c", "import time; time.sleep(600)"]))
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]
    assert _root_net_state() == root_before


def test_teardown_also_happens_when_the_body_raises(netns: None) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with Testbed(2) as tb:
            prefix = tb.prefix + "-"
            raise RuntimeError("boom")
    assert not [ns for ns in list_namespaces() if ns.startswith(prefix)]


def test_shaper_choice_is_checked_and_a_failed_build_leaves_nothing(netns: None) -> None:
    before = set(list_namespaces())
    with pytest.raises(NetnsError, match="unknown shaper"):
        with Testbed(2, shaper="bogus"):
            pass
    try:
        with Testbed(2, shaper="netem") as tb:
            # Where the kernel has sch_netem, the profile really lands on the host's link.
            tb.set_profile(LinkProfile(delay_ms=5, jitter_ms=1, loss=0.01))
            assert "netem" in run_cmd(["tc", "-n", tb.hosts[0].ns, "qdisc", "show", "dev", "eth0"])
    except NetnsError as exc:
        assert "sch_netem" in str(exc)
    assert set(list_namespaces()) == before


def test_cleanup_removes_only_namespaces_of_dead_runs(netns: None) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover, ours = f"p2pa-{dead.pid}-h01", f"p2pa-{os.getpid()}-keep"
    for ns in (leftover, ours):
        run_cmd(["ip", "netns", "add", ns])
    try:
        removed = cleanup_leftovers()
        assert leftover in removed
        assert ours not in removed and ours in list_namespaces()
    finally:
        kill_namespace(leftover)
        kill_namespace(ours)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_small_scenario_on_real_nodes_converges_without_losing_acknowledged_bids(
        netns: None, tmp_path: Path) -> None:
    from testbed.scenario import ScenarioConfig, run_scenario, summary_text

    cfg = ScenarioConfig(hosts=5, seed=11, auctions=4, bids=30, loss=0.10, delay_ms=100,
                         jitter_ms=50, kills=2, down_for=3.0, converge_timeout=60.0, workers=3,
                         report_dir=tmp_path / "report", workdir=tmp_path / "w")
    rep = asyncio.run(run_scenario(cfg))
    print(summary_text(rep))
    conv = rep["convergence"]
    assert rep["reference"]["ok"], rep["reference"]
    assert rep["acked"]["bids"] >= 10, rep["rejected"]
    assert sum(h["kills"] for h in rep["hosts"].values()) == 2
    assert conv["missing_acked_bids"] == {}
    assert conv["disagreeing_auctions"] == []
    assert conv["close_winner_changed"] == []
    assert conv["converged"], summary_text(rep)
    assert rep["show_check"]["ok"], rep["show_check"]
    assert rep["passed"]
    assert (tmp_path / "report" / "report.json").exists()
    assert not [ns for ns in list_namespaces() if ns.startswith(rep["namespaces"] + "-")]
