"""The discovery node on real TCP: in-process (run_bootstrap) and as its own OS process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from p2pauction.bootstrap import run_bootstrap
from p2pauction.state.identity import Identity
from tests.net_helpers import WAIT, RawPeer, until

NET = "bootstrap-test"


async def _register(addr: str, listen: str) -> RawPeer:
    peer = await RawPeer(Identity.generate(), NET).connect(addr)
    assert await peer.handshake(role="node", addr=listen), "handshake with the bootstrap"
    assert peer.session is not None and peer.session.peer is not None and peer.session.peer.role == "bootstrap"
    peer.send({"t": "register", "key": peer.identity.public_hex, "addr": listen})
    return peer


def test_bootstrap_registers_nodes_and_serves_samples_then_stops(tmp_path: Path) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        ready: list[str] = []
        task = asyncio.create_task(run_bootstrap(
            "127.0.0.1:0", NET, data_dir=tmp_path / "boot", info_dir=tmp_path / "info",
            on_started=ready.append, stop=stop))
        await until(lambda: ready, "bootstrap ready")
        addr = ready[0]
        assert not addr.endswith(":0")
        info = json.loads((tmp_path / "info" / "bootstrap.json").read_text())
        assert info["listen"] == addr and info["net"] == NET
        assert (tmp_path / "boot" / "identity.key").exists()

        a = await _register(addr, "127.0.0.1:40001")
        b = await _register(addr, "127.0.0.1:40002")
        a.send({"t": "heartbeat"})

        async def a_sees_b() -> bool:
            a.send({"t": "sample", "n": 8})
            reply = await a.recv_type("peers")
            assert reply is not None, "bootstrap closed the link"
            return [b.identity.public_hex, "127.0.0.1:40002"] in reply["peers"]

        await until(a_sees_b, "a's sample includes b")

        # A wrong network is refused with a reason and the connection is closed.
        wrong = await RawPeer(Identity.generate(), "other-net").connect(addr)
        assert not await wrong.handshake(timeout=5), "a node of another network was accepted"
        assert wrong.last_error is not None and "wrong network" in wrong.last_error, wrong.last_error

        stop.set()
        await asyncio.wait_for(task, WAIT)
        assert await a.closed_by_remote(), "links closed on stop"
        for p in (a, b, wrong):
            await p.close()
    asyncio.run(main())


def test_bootstrap_expires_nodes_that_stop_heartbeating() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        ready: list[str] = []
        fast = {"heartbeat_interval": 0.2, "heartbeat_missed": 2, "housekeeping_interval": 0.1}
        task = asyncio.create_task(run_bootstrap("127.0.0.1:0", NET, on_started=ready.append,
                                                 stop=stop, gossip=fast))
        await until(lambda: ready, "bootstrap ready")
        silent = await _register(ready[0], "127.0.0.1:40003")
        asker = await _register(ready[0], "127.0.0.1:40004")

        async def sample() -> list[list[str]]:
            asker.send({"t": "heartbeat"})
            asker.send({"t": "sample", "n": 8})
            reply = await asker.recv_type("peers")
            assert reply is not None
            return list(reply["peers"])

        assert [silent.identity.public_hex, "127.0.0.1:40003"] in await sample()

        async def silent_expired() -> bool:
            return not any(p[0] == silent.identity.public_hex for p in await sample())

        await until(silent_expired, "the silent node expires", interval=0.1)
        stop.set()
        await asyncio.wait_for(task, WAIT)
        await silent.close()
        await asker.close()
    asyncio.run(main())


def test_bootstrap_process_prints_its_address_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pauction.bootstrap", "--listen", "127.0.0.1:0", "--net", NET,
         "--info-dir", str(tmp_path), "--log-format", "json", "--set", "exempt_ips=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        addr_file = tmp_path / "bootstrap.json"
        deadline = time.monotonic() + WAIT
        while not addr_file.exists():  # polled with a deadline; the process may also die early
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the bootstrap never wrote its address"
            time.sleep(0.05)
        line = json.loads(addr_file.read_text())["listen"]
        host, _, port = line.rpartition(":")
        assert host == "127.0.0.1" and port.isdigit() and int(port) > 0, line

        async def handshake() -> bool:
            peer = await RawPeer(Identity.generate(), NET).connect(line)
            ok = await peer.handshake()
            await peer.close()
            return ok

        assert asyncio.run(handshake())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, err
        assert out.splitlines()[0] == line  # stdout's first line is the real address too
        assert '"bootstrap_stopped"' in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)
