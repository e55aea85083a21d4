"""The asyncio adapter against tiny fake cores: every duty of the driver, on loopback, port 0.

The fake cores make no protocol decisions either: they record every input and emit the actions a
test asks for, so each test checks one thing the transport must do (deliver, dial, tick, close
after flushing, drop a slow peer, time out a silent one, shut down cleanly).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import pytest

from p2pauction.errors import UsageError
from p2pauction.gossip.actions import Accepted, CloseConn, Dial, Send
from p2pauction.gossip.transport import Transport, TransportConfig, format_address, parse_address

T = TypeVar("T")
WAIT = 10.0  # generous bound for every poll; tests finish in milliseconds when the code is right


class FakeCore:
    """Records inputs; ``echo`` sends every received chunk back; tests push actions directly."""

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.actions: list[Any] = []
        self.made: dict[int, tuple[bool, str]] = {}
        self.lost: list[int] = []
        self.received: dict[int, bytearray] = {}
        self.failed: list[str] = []
        self.ticks: list[float] = []
        self.deadline = math.inf
        self.raise_on_data = False

    def connection_made(self, conn: int, *, outbound: bool, remote_addr: str, now: float) -> None:
        assert conn not in self.made, "conn ids must be unique"
        self.made[conn] = (outbound, remote_addr)
        self.received[conn] = bytearray()

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        assert conn in self.made and conn not in self.lost, "data only on live connections"
        if self.raise_on_data:
            raise RuntimeError("fake core bug")
        self.received[conn] += data
        if self.echo:
            self.actions.append(Send(conn, data))

    def connection_lost(self, conn: int, now: float) -> None:
        assert conn in self.made and conn not in self.lost, "lost exactly once, after made"
        self.lost.append(conn)

    def dial_failed(self, addr: str, now: float) -> None:
        self.failed.append(addr)

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        self.deadline = math.inf

    def next_deadline(self) -> float:
        return self.deadline

    def take_actions(self) -> list[Any]:
        out, self.actions = self.actions, []
        return out


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):  # no extra task: the leftover-task check stays exact
            result = await coro
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover, f"tasks left after the transports stopped: {leftover}"
        return result
    return asyncio.run(bounded())


async def until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``cond`` until true; fail the test with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def serving(core: FakeCore, **kwargs: Any) -> AsyncIterator[Transport]:
    """Run a transport on 127.0.0.1:0 for the block, then stop it (run() must return)."""
    transport = Transport(core, "127.0.0.1:0", **kwargs)
    task = asyncio.create_task(transport.run())
    await asyncio.wait_for(transport.started.wait(), WAIT)
    try:
        yield transport
    finally:
        transport.stop()
        await asyncio.wait_for(task, WAIT)


async def connect(transport: Transport) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert transport.address is not None
    host, port = parse_address(transport.address)
    return await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), WAIT)


def test_parse_and_format_address() -> None:
    assert parse_address("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_address("[::1]:0") == ("::1", 0)
    assert format_address("::1", 5) == "[::1]:5"
    for bad in ("localhost", ":7000", "h:99999", "h:x", ""):
        with pytest.raises(UsageError):
            parse_address(bad)


def test_inbound_bytes_reach_the_core_and_sends_reach_the_peer() -> None:
    async def main() -> None:
        core = FakeCore(echo=True)
        async with serving(core) as transport:
            assert transport.address is not None and not transport.address.endswith(":0")
            reader, writer = await connect(transport)
            await until(lambda: len(core.made) == 1, "connection_made")
            [(cid, (outbound, remote))] = core.made.items()
            local = writer.get_extra_info("sockname")
            assert outbound is False and remote == f"127.0.0.1:{local[1]}"
            writer.write(b"hello, core")
            assert await asyncio.wait_for(reader.readexactly(11), WAIT) == b"hello, core"
            await close_writer(writer)
            await until(lambda: core.lost == [cid], "connection_lost after the peer closed")
            assert transport.stats()["connections_open"] == 0
    run(main())


def test_dial_connects_outbound_and_failures_are_reported() -> None:
    async def main() -> None:
        server_core, client_core = FakeCore(echo=True), FakeCore()
        async with serving(server_core) as server, serving(client_core) as client:
            assert server.address is not None
            client_core.actions.append(Dial(server.address))
            client.pump()
            await until(lambda: len(client_core.made) == 1, "outbound connection_made")
            [(cid, (outbound, remote))] = client_core.made.items()
            assert outbound is True and remote == server.address
            client_core.actions.append(Send(cid, b"ping"))
            client.pump()
            await until(lambda: bytes(client_core.received[cid]) == b"ping", "echo back to the dialer")

            # A port nobody listens on: the listener is closed right after binding.
            probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            dead = f"127.0.0.1:{probe.sockets[0].getsockname()[1]}"
            probe.close()
            await probe.wait_closed()
            client_core.actions.append(Dial(dead))
            client.pump()
            await until(lambda: client_core.failed == [dead], "dial_failed")
            assert client.stats()["dials_failed"] == 1
    run(main())


def test_tick_is_called_at_the_core_deadline() -> None:
    async def main() -> None:
        core = FakeCore()
        async with serving(core) as transport:
            loop = asyncio.get_running_loop()
            target = loop.time() + 0.05
            core.deadline = target
            transport.pump()  # wakes the timer: the deadline moved
            await until(lambda: len(core.ticks) == 1, "tick at the deadline")
            assert core.ticks[0] >= target
    run(main())


def test_close_conn_flushes_queued_bytes_then_reports_the_loss() -> None:
    async def main() -> None:
        core = FakeCore()
        async with serving(core) as transport:
            reader, writer = await connect(transport)
            await until(lambda: len(core.made) == 1, "connection_made")
            cid = next(iter(core.made))
            payload = bytes(range(256)) * 4096  # 1 MiB, more than one write batch
            core.actions += [Send(cid, payload), CloseConn(cid, "test says goodbye")]
            transport.pump()
            got = await asyncio.wait_for(reader.read(), WAIT)  # until EOF
            assert got == payload
            await until(lambda: core.lost == [cid], "connection_lost after CloseConn")
            await close_writer(writer)
    run(main())


def test_a_peer_that_never_reads_is_dropped_with_bounded_queue() -> None:
    async def main() -> None:
        core = FakeCore()
        cfg = TransportConfig(send_queue_max_bytes=256 * 1024)
        async with serving(core, config=cfg) as transport:
            _reader, writer = await connect(transport)  # never reads
            await until(lambda: len(core.made) == 1, "connection_made")
            cid = next(iter(core.made))
            chunk = b"x" * 16384
            sent = 0
            while cid not in core.lost and sent < 256 * 2**20:
                core.actions.append(Send(cid, chunk))
                transport.pump()
                sent += len(chunk)
                assert transport.stats()["send_queue_bytes"] <= cfg.send_queue_max_bytes
                await asyncio.sleep(0)
            await until(lambda: core.lost == [cid], "slow peer dropped")
            assert transport.stats()["slow_peer_dropped"] == 1
            assert sent < 64 * 2**20, "dropped long before a lot was sent"
            await close_writer(writer)
    run(main())


def test_silence_past_the_read_timeout_closes_the_link() -> None:
    async def main() -> None:
        core = FakeCore()
        async with serving(core, config=TransportConfig(read_timeout=0.2)) as transport:
            reader, writer = await connect(transport)
            await until(lambda: len(core.lost) == 1, "read timeout")
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            assert transport.stats()["read_timeouts"] == 1
            await close_writer(writer)
    run(main())


def test_accepted_actions_reach_the_callback_and_its_errors_are_contained() -> None:
    async def main() -> None:
        core = FakeCore(echo=True)
        seen: list[tuple[Any, bool]] = []

        def on_accepted(event: Any, own: bool) -> None:
            seen.append((event, own))
            if event == "boom":
                raise RuntimeError("subscriber bug")

        async with serving(core, on_accepted=on_accepted) as transport:
            core.actions += [Accepted(cast(Any, "e1"), True), Accepted(cast(Any, "boom"), False)]
            transport.pump()
            assert seen == [("e1", True), ("boom", False)]
            assert transport.stats()["callback_errors"] == 1
            reader, writer = await connect(transport)  # still serving
            writer.write(b"ok")
            assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"ok"
            await close_writer(writer)
    run(main())


def test_a_core_error_closes_only_that_connection() -> None:
    async def main() -> None:
        core = FakeCore(echo=True)
        async with serving(core) as transport:
            _r1, w1 = await connect(transport)
            await until(lambda: len(core.made) == 1, "first connection")
            core.raise_on_data = True
            w1.write(b"trigger")
            await until(lambda: len(core.lost) == 1, "the failing connection is closed")
            core.raise_on_data = False
            r2, w2 = await connect(transport)
            w2.write(b"still here")
            assert await asyncio.wait_for(r2.readexactly(10), WAIT) == b"still here"
            assert transport.stats()["core_errors"] == 1
            await close_writer(w1)
            await close_writer(w2)
    run(main())


def test_the_connection_cap_refuses_extra_connections() -> None:
    async def main() -> None:
        core = FakeCore(echo=True)
        async with serving(core, config=TransportConfig(max_connections=2)) as transport:
            conns = [await connect(transport) for _ in range(3)]
            await until(lambda: transport.stats()["conn_cap_refused"] == 1, "third refused")
            assert len(core.made) == 2
            for _, w in conns:
                await close_writer(w)
    run(main())


@pytest.mark.parametrize("how", ["stop", "cancel"])
def test_shutdown_closes_everything_and_reports_every_loss(how: str) -> None:
    async def main() -> None:
        server_core, client_core = FakeCore(echo=True), FakeCore()
        server = Transport(server_core, "127.0.0.1:0")
        server_task = asyncio.create_task(server.run())
        await asyncio.wait_for(server.started.wait(), WAIT)
        async with serving(client_core) as client:
            assert server.address is not None
            client_core.actions.append(Dial(server.address))
            client.pump()
            reader, writer = await connect(server)
            await until(lambda: len(server_core.made) == 2, "two inbound connections")
            if how == "stop":
                server.stop()
            else:
                server_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(server_task, WAIT)
            assert sorted(server_core.lost) == sorted(server_core.made)
            assert await asyncio.wait_for(reader.read(), WAIT) == b""  # the raw client saw EOF
            await until(lambda: len(client_core.lost) == 1, "the dialer saw the close")
            await close_writer(writer)
            with pytest.raises(OSError):
                await connect(server)  # the listener is gone
    run(main())


def test_bind_first_then_attach_the_core() -> None:
    """A node on port 0 learns its real address before it builds its core (listen_addr)."""
    async def main() -> None:
        transport = Transport(None, "127.0.0.1:0")
        with pytest.raises(UsageError):
            await transport.run()  # no core yet: a local misuse, said plainly
        addr = await transport.bind()
        assert addr == transport.address and parse_address(addr)[1] > 0
        core = FakeCore(echo=True)
        transport.core = core
        task = asyncio.create_task(transport.run())
        await asyncio.wait_for(transport.started.wait(), WAIT)
        with pytest.raises(UsageError):
            transport.core = FakeCore()  # not while running
        reader, writer = await connect(transport)
        writer.write(b"same port")
        assert await asyncio.wait_for(reader.readexactly(9), WAIT) == b"same port"
        await close_writer(writer)
        transport.stop()
        await asyncio.wait_for(task, WAIT)

        unused = Transport(None, "127.0.0.1:0")
        await unused.bind()
        unused.close_unstarted()  # the start failed after bind(): the port is released
        with pytest.raises(OSError):
            await connect(unused)
    run(main())


def test_actions_caused_inside_on_accepted_keep_the_core_order() -> None:
    """A callback that feeds the core (the node publishing from a subscriber) re-enters pump();
    the actions already taken must still go out before the ones the callback caused."""
    async def main() -> None:
        core = FakeCore()
        holder: list[Transport] = []

        def on_accepted(event: Any, own: bool) -> None:
            if event == "first":
                core.actions.append(Send(cid, b"3"))  # what a publish from here would emit
                holder[0].pump()

        async with serving(core, on_accepted=on_accepted) as transport:
            holder.append(transport)
            reader, writer = await connect(transport)
            await until(lambda: len(core.made) == 1, "connection_made")
            cid = next(iter(core.made))
            core.actions += [Send(cid, b"1"), Accepted(cast(Any, "first"), False), Send(cid, b"2")]
            transport.pump()
            assert await asyncio.wait_for(reader.readexactly(3), WAIT) == b"123"
            await close_writer(writer)
    run(main())
