"""Issue 11, defects 4 and 10: no control request, no number of idle clients and no failing reader
takes the node down or locks its owner out. The crash cases run against real node processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pauction.api import AuctionNode, Notification
from p2pauction.control import ControlConfig, _short_path, socket_path, validate_request
from p2pauction.errors import ProtocolError, UsageError
from tests.procs import Cluster, Proc, cli, ddir, query, start_node, wait_until

pytestmark = pytest.mark.timeout(180)


def raw_request(data_dir: Path, line: bytes, timeout: float = 20.0) -> dict[str, Any]:
    """Send one raw line on a fresh control connection; the one reply line, parsed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    with sock, _short_path(socket_path(data_dir)) as addr:
        sock.connect(addr)
        sock.sendall(line)
        with sock.makefile("rb") as stream:
            reply = stream.readline()
    assert reply, "the node closed the connection without a reply"
    return dict(json.loads(reply))


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    root = tmp_path_factory.mktemp("ctl")
    with Cluster(root) as cluster:
        node = start_node(root / "K1", name="K1", offline=True)
        cluster.procs.append(node)
        yield node



def assert_alive(node: Proc) -> None:
    assert node.alive(), node.log_tail()
    assert query(ddir(node), "ping")["pong"] is True


@pytest.mark.parametrize("line", [
    b'{"op":"watch","args":{"auction":5}}\n',
    b'{"op":"watch","args":{"from_start":"yes"}}\n',
    b'{"op":"show","args":{"auction":["x"]}}\n',
    b'{"op":"history","args":{"since":1e400}}\n',
    b'{"op":"history","args":{"until":99999999999999999999999}}\n',
    b'{"op":"auctions","args":{"status":{"a":1}}}\n',
    b'{"op":"bid","args":{"auction":"ab","amount":80}}\n',
], ids=["watch-int-auction", "watch-str-flag", "show-list", "since-inf", "until-huge", "status-object",
        "amount-number"])
def test_a_mistyped_request_is_refused_and_the_node_lives(solo: Proc, line: bytes) -> None:
    reply = raw_request(ddir(solo), line)
    assert reply["ok"] is False and reply["error"]["type"] == "UsageError", reply
    assert "bad arguments" in reply["error"]["message"]
    assert_alive(solo)


def test_a_request_nested_100k_deep_is_refused_and_the_node_lives(solo: Proc) -> None:
    deep = b'{"op":"ping","args":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}\n"
    reply = raw_request(ddir(solo), deep)
    assert reply["ok"] is False and reply["error"]["type"] == "ProtocolError"
    assert "nested too deeply" in reply["error"]["message"]
    assert_alive(solo)


def test_a_huge_duration_is_a_usage_error_not_an_internal_one(solo: Proc) -> None:
    reply = raw_request(ddir(solo), b'{"op":"open","args":{"item":"x","price":"1","duration":1e308}}\n')
    assert reply["ok"] is False and reply["error"]["type"] == "UsageError", reply
    assert "duration" in reply["error"]["message"]
    result = cli(ddir(solo), "open", "x", "1", "--duration", "1e308", check=False, json_out=False)
    assert result.returncode == 1 and "internal error" not in result.stderr and "duration" in result.stderr
    assert_alive(solo)


@contextlib.contextmanager
def fd_limit(soft: int) -> Iterator[None]:
    """Processes started inside inherit a soft RLIMIT_NOFILE of ``soft`` (this one gets it back)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_many_idle_clients_cannot_lock_the_owner_out(tmp_path: Path) -> None:
    """300 idle connections against a node limited to 256 descriptors: it keeps at most
    max_clients (64) and still answers status."""
    with Cluster(tmp_path) as cluster:
        with fd_limit(256):
            node = start_node(tmp_path / "F1", name="F1", offline=True)
        cluster.procs.append(node)
        idle: list[socket.socket] = []
        try:
            with _short_path(socket_path(ddir(node))) as addr:
                for _ in range(300):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.setblocking(False)
                    idle.append(s)
                    # a full listen backlog says EAGAIN: retry until the node has accepted more
                    wait_until(lambda: _try_connect(s, addr), 20, "the node to accept a client")
            status = wait_until(lambda: query(ddir(node), "status"), 30, "status with 300 idle clients")
            assert status["events"] == 0
            assert_alive(node)
        finally:
            for s in idle:
                s.close()


def _try_connect(sock: socket.socket, addr: str) -> bool | None:
    try:
        sock.connect(addr)
    except BlockingIOError:
        return None
    return True


# --------------------------------------------------------------------------- in-process


def test_validate_request_names_the_problem() -> None:
    with pytest.raises(UsageError, match="unknown 'bogus'"):
        validate_request(b'{"op":"status","args":{"bogus":1}}')
    with pytest.raises(UsageError, match="auction is required"):
        validate_request(b'{"op":"show","args":{}}')
    with pytest.raises(UsageError, match="duration must be a finite number"):
        validate_request(b'{"op":"open","args":{"item":"x","price":"1","duration":NaN}}')
    with pytest.raises(ProtocolError):
        validate_request(b"[1]")
    assert validate_request(b'{"op":"watch","args":{"auction":null,"from_start":true}}') == (
        "watch", {"auction": None, "from_start": True})


async def _connect(data_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    with _short_path(socket_path(data_dir)) as addr:
        return await asyncio.open_unix_connection(addr)


def test_an_idle_client_is_dropped_after_idle_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = ControlConfig(idle_timeout=0.3)
        async with AuctionNode(tmp_path / "n", network=False, control_config=config):
            reader, writer = await _connect(tmp_path / "n")
            async with asyncio.timeout(10):
                assert await reader.read() == b""     # EOF: the node hung up on the silent client
            writer.close()

    asyncio.run(scenario())


def test_a_full_control_socket_evicts_the_longest_idle_client(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = ControlConfig(max_clients=2)
        async with AuctionNode(tmp_path / "n", network=False, control_config=config) as node:
            first = await _connect(node.data_dir)
            second = await _connect(node.data_dir)
            third = await _connect(node.data_dir)
            third[1].write(b'{"op":"ping"}\n')
            async with asyncio.timeout(10):
                assert json.loads(await third[0].readline())["ok"] is True
                assert await first[0].read() == b""   # the oldest idle one made room
            for _, writer in (first, second, third):
                writer.close()

    asyncio.run(scenario())


def test_a_failing_reader_closes_only_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notification that cannot be rendered ends that watch (with a reason); a listener that
    raises is counted; the node keeps serving and other subscribers keep receiving."""

    def broken_to_json(self: Notification) -> dict[str, Any]:
        raise RuntimeError("planted rendering bug")

    async def scenario() -> None:
        async with AuctionNode(tmp_path / "n", network=False) as node:
            survivor = node.subscribe()
            def crash(note: Notification) -> None:
                raise ZeroDivisionError("planted listener bug")

            listener = node.add_listener(crash)
            reader, writer = await _connect(node.data_dir)
            writer.write(b'{"op":"watch","args":{}}\n')
            async with asyncio.timeout(10):
                assert json.loads(await reader.readline())["ok"] is True
            monkeypatch.setattr(Notification, "to_json", broken_to_json)
            auction = await node.open_auction("Pic", "1")
            async with asyncio.timeout(10):
                end = json.loads(await reader.readline())
                assert "planted rendering bug" in end["end"]
                assert await reader.read() == b""
            writer.close()
            note = await survivor.get(timeout=10)
            assert note is not None and note.auction_id == auction
            assert listener.errors == 1
            monkeypatch.undo()
            assert (await node.open_auction("Pic2", "1")) in {v.id for v in node.auctions()}
            assert node.status()["events"] == 2

    asyncio.run(scenario())
