"""The thin asyncio adapter: runs one sans-IO core (GossipCore or DiscoveryCore) on real TCP.

The core makes every protocol decision; this module only moves bytes and time:

- inbound connections from ``asyncio.start_server``, outbound ones for each ``Dial`` action;
- one reader task and one writer task per connection (in a per-connection ``TaskGroup`` that
  lives in the transport's own ``TaskGroup``), feeding bytes to ``core.data_received``;
- a bounded send queue per connection: a peer that does not read fills it and is dropped
  (``slow_peer_dropped``), so a remote can never make us buffer without bound;
- a timer task that calls ``core.tick(now)`` at ``core.next_deadline()``;
- after every core input, ``take_actions()`` is drained and performed in order.

``now`` is ``loop.time()`` (monotonic seconds). Every wait is bounded by a timeout, and
``stop()`` (or cancelling ``run()``) closes the server, flushes and closes every connection
(bounded time), reports each loss to the core, and leaves no task behind.

Code that feeds the core from outside (``core.publish`` from the node) must call
:meth:`Transport.pump` afterwards so the resulting actions are performed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2pauction.errors import UsageError
from p2pauction.gossip.actions import Accepted, CloseConn, Dial, Send
from p2pauction.gossip.counters import TransportCounters
from p2pauction.logs import get_logger

log = get_logger(__name__)

Address = str
AcceptedCallback = Callable[[Any, bool], None]


class CoreLike(Protocol):
    """What the transport drives: the connection interface of GossipCore and DiscoveryCore.

    ``dial_failed(addr, now)`` is called too when the core has it (DiscoveryCore never dials).
    """

    def connection_made(self, conn: int, *, outbound: bool, remote_addr: Address, now: float) -> None: ...
    def data_received(self, conn: int, data: bytes, now: float) -> None: ...
    def connection_lost(self, conn: int, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def next_deadline(self) -> float: ...
    def take_actions(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Limits of the adapter itself. Protocol limits (handshake timeout, caps) live in the core."""

    send_queue_max_bytes: int = 4 * 2**20   # per connection; over it the peer is slow and dropped
    read_size: int = 64 * 2**10             # bytes per read() call, fed to the core as one chunk
    read_timeout: float = 60.0              # silence that closes a link (the core pings before that)
    write_timeout: float = 30.0             # a drain() blocked this long means the peer stopped reading
    dial_timeout: float = 5.0
    close_flush_timeout: float = 2.0        # CloseConn: time allowed to flush what is queued
    write_batch_bytes: int = 256 * 2**10    # at most this much handed to the socket per drain()
    max_connections: int = 1024             # hard cap (file descriptors); the core has finer caps
    backlog: int = 512                      # listen backlog: bursts of connects are not refused
    max_timer_sleep: float = 30.0           # re-read next_deadline() at least this often


def parse_address(addr: Address) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) to ``(host, port)``; UsageError with the reason."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"address {addr!r} is not HOST:PORT (e.g. 127.0.0.1:7000; port 0 picks one)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def format_address(host: str, port: int) -> Address:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(eq=False)
class _Conn:
    """One live TCP connection and its bounded send queue."""

    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    remote: Address
    outbound: bool
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    queued: int = 0                      # bytes in queue + the batch being drained
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    flush: bool = False                  # when closing: deliver what is queued first
    abort: bool = False                  # when closing: discard buffers (slow or broken peer)
    reason: str = ""
    reader_task: asyncio.Task[None] | None = None
    abort_timer: asyncio.TimerHandle | None = None   # bounds the flush of a closing connection


class Transport:
    """Runs ``core`` on ``listen`` until :meth:`stop` (or cancellation of :meth:`run`).

    The core may be attached after :meth:`bind` (set :attr:`core` before :meth:`run`), so that
    a node listening on port 0 can put its real address in the core's config.
    """

    def __init__(self, core: CoreLike | None, listen: Address, *, config: TransportConfig | None = None,
                 on_accepted: AcceptedCallback | None = None) -> None:
        self._core: CoreLike | None = None
        self.config = config or TransportConfig()
        self.on_accepted = on_accepted
        self._listen = parse_address(listen)
        self.address: Address | None = None     # the real bound address, once bound
        self.started = asyncio.Event()          # set when run() serves and the core is live
        self._server: asyncio.Server | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._timer_wake = asyncio.Event()
        self._conns: dict[int, _Conn] = {}
        self._dialing: dict[asyncio.Task[None], Address] = {}
        self._next_id = 1
        self._pumping = False
        self.counters = TransportCounters()
        if core is not None:
            self.core = core

    @property
    def core(self) -> CoreLike:
        if self._core is None:
            raise UsageError("Transport.core must be set before run()")
        return self._core

    @core.setter
    def core(self, core: CoreLike) -> None:
        if self._tg is not None:
            raise UsageError("cannot replace the core of a running transport")
        self._core = core
        if hasattr(core, "send_backlog"):
            core.send_backlog = self.send_backlog  # the core paces what it sends by this

    def send_backlog(self, conn_id: int) -> int:
        """Bytes queued for a connection and not yet written to its socket (0 when unknown)."""
        conn = self._conns.get(conn_id)
        return conn.queued if conn is not None else 0

    # ----------------------------------------------------------------- public API

    def now(self) -> float:
        """The clock handed to the core (monotonic seconds)."""
        return self._running_loop().time()

    def stats(self) -> dict[str, int]:
        return {**self.counters.to_json(), "connections_open": len(self._conns),
                "send_queue_bytes": sum(c.queued for c in self._conns.values())}

    def stop(self) -> None:
        """Ask :meth:`run` to shut down cleanly; safe to call more than once or before run."""
        self._stop.set()

    def pump(self) -> None:
        """Perform the core's pending actions; call after feeding the core from outside."""
        if self._tg is None:
            return  # run() drains the initial actions as soon as it starts
        if self._pumping:
            return  # re-entered from on_accepted: the outer loop drains the new actions in order
        self._pumping = True
        try:
            while actions := self.core.take_actions():
                for action in actions:
                    self._perform(action)
        finally:
            self._pumping = False
        self._timer_wake.set()  # the deadline may have moved

    async def bind(self) -> Address:
        """Open the listening socket (not yet accepting) and return the real address."""
        if self._server is None:
            self._loop = asyncio.get_running_loop()
            host, port = self._listen
            self._server = await asyncio.start_server(
                self._on_inbound, host, port, backlog=self.config.backlog,
                limit=self.config.read_size, start_serving=False)
            sockname = self._server.sockets[0].getsockname()
            self.address = format_address(host, int(sockname[1]))
        assert self.address is not None
        return self.address

    def close_unstarted(self) -> None:
        """Release a socket opened by :meth:`bind` when :meth:`run` will not be called after all."""
        if self._server is not None and self._tg is None:
            self._server.close()

    async def run(self) -> None:
        """Serve until stopped. Binds first if :meth:`bind` was not called."""
        core = self.core  # UsageError before anything is opened
        await self.bind()
        server = self._server
        assert server is not None
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                timer = tg.create_task(self._timer_loop(core), name="transport-timer")
                await server.start_serving()
                self.pump()
                self.started.set()
                log.info("transport_listening", addr=self.address)
                await self._stop.wait()  # the service's lifetime, not an I/O wait
                self._shutdown(server, timer)
        finally:
            self._stopping = True
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), self.config.close_flush_timeout)
            self._tg = None
            log.info("transport_stopped", addr=self.address)

    # ----------------------------------------------------------------- actions

    def _perform(self, action: object) -> None:
        match action:
            case Send(conn=cid, data=data):
                self._enqueue(cid, data)
            case Dial(addr=addr):
                self._start_dial(addr)
            case CloseConn(conn=cid, reason=reason):
                conn = self._conns.get(cid)
                if conn is not None:
                    self._begin_close(conn, reason, flush=True)
            case Accepted(event=event, own=own):
                self._deliver(event, own)
            case _:
                log.error("transport_unknown_action", action=type(action).__name__)

    def _enqueue(self, cid: int, data: bytes) -> None:
        conn = self._conns.get(cid)
        if conn is None or conn.closing:
            self.counters.sends_to_closed += 1
            return
        if conn.queued + len(data) > self.config.send_queue_max_bytes:
            self.counters.slow_peer_dropped += 1
            log.warning("slow_peer_dropped", conn=cid, remote=conn.remote, queued=conn.queued)
            self._begin_close(conn, "slow peer: send queue full", abort=True)
            return
        conn.queue.append(data)
        conn.queued += len(data)
        conn.wake.set()

    def _deliver(self, event: Any, own: bool) -> None:
        if self.on_accepted is None:
            return
        try:
            self.on_accepted(event, own)
        except Exception:  # a subscriber's bug must not take the network down
            self.counters.callback_errors += 1
            log.exception("on_accepted_failed")

    def _core_call(self, fn: Callable[..., None], *args: Any, **kwargs: Any) -> bool:
        """Call a core input, then perform its actions. False if the core raised (a bug: logged)."""
        try:
            fn(*args, **kwargs)
        except Exception:
            self.counters.core_errors += 1
            log.exception("core_call_failed", call=getattr(fn, "__name__", "?"))
            self.pump()
            return False
        self.pump()
        return True

    # ----------------------------------------------------------------- connections

    def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine): asyncio then creates no task we do not own.
        peer = writer.get_extra_info("peername")
        remote = format_address(str(peer[0]), int(peer[1])) if peer else "?"
        if self._stopping or self._tg is None or len(self._conns) >= self.config.max_connections:
            self.counters.conn_cap_refused += 1
            writer.transport.abort()
            return
        self.counters.connections_in += 1
        conn = self._register(reader, writer, remote, outbound=False)
        self._tg.create_task(self._run_conn(conn), name=f"conn-{conn.id}")

    def _register(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  remote: Address, *, outbound: bool) -> _Conn:
        conn = _Conn(self._next_id, reader, writer, remote, outbound)
        self._next_id += 1
        self._conns[conn.id] = conn
        if not self._core_call(self.core.connection_made, conn.id, outbound=outbound,
                               remote_addr=remote, now=self.now()):
            self._begin_close(conn, "core error on connect", abort=True)
        return conn

    def _start_dial(self, addr: Address) -> None:
        if self._stopping or self._tg is None:
            return
        self.counters.dials += 1
        task = self._tg.create_task(self._dial(addr), name=f"dial-{addr}")
        self._dialing[task] = addr

    async def _dial(self, addr: Address) -> None:
        try:
            opened = await self._open(addr)
        finally:
            self._dialing.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        if opened is None:
            self.counters.dials_failed += 1
            self._report_dial_failed(addr)
            return
        reader, writer = opened
        if self._stopping or len(self._conns) >= self.config.max_connections:
            self.counters.conn_cap_refused += 1
            writer.transport.abort()
            self._report_dial_failed(addr)
            return
        self.counters.connections_out += 1
        conn = self._register(reader, writer, addr, outbound=True)
        await self._run_conn(conn)

    def _report_dial_failed(self, addr: Address) -> None:
        dial_failed = getattr(self.core, "dial_failed", None)
        if dial_failed is not None and not self._stopping:
            self._core_call(dial_failed, addr, self.now())

    async def _open(self, addr: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            host, port = parse_address(addr)
            return await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=self.config.read_size),
                self.config.dial_timeout)
        except (OSError, TimeoutError, UsageError) as exc:
            log.debug("dial_failed", addr=addr, error=repr(exc))
            return None

    async def _run_conn(self, conn: _Conn) -> None:
        """Own the reader and writer of one connection; report the loss to the core once."""
        try:
            async with asyncio.TaskGroup() as tg:
                conn.reader_task = tg.create_task(self._read_loop(conn), name=f"read-{conn.id}")
                tg.create_task(self._write_loop(conn), name=f"write-{conn.id}")
        finally:
            self._conns.pop(conn.id, None)
            log.debug("connection_closed", conn=conn.id, remote=conn.remote, reason=conn.reason)
            self._core_call(self.core.connection_lost, conn.id, self.now())

    def _begin_close(self, conn: _Conn, reason: str, *, flush: bool = False, abort: bool = False) -> None:
        """Start closing: stop reading now; the writer flushes (bounded in time) or aborts."""
        if abort:
            self._abort(conn)  # also wakes a writer blocked in drain()
        if conn.closing:
            conn.wake.set()
            return
        conn.closing, conn.flush, conn.reason = True, flush, reason
        if not conn.abort:
            conn.abort_timer = self._running_loop().call_later(
                self.config.close_flush_timeout, self._abort, conn)
        task = conn.reader_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        conn.wake.set()

    def _abort(self, conn: _Conn) -> None:
        conn.abort = True
        conn.writer.transport.abort()
        conn.wake.set()

    async def _read_loop(self, conn: _Conn) -> None:
        cfg = self.config
        while not conn.closing:
            try:
                async with asyncio.timeout(cfg.read_timeout):  # no extra task per read
                    data = await conn.reader.read(cfg.read_size)
            except TimeoutError:
                self.counters.read_timeouts += 1
                self._begin_close(conn, "read timeout", abort=True)
                return
            except OSError as exc:
                self._begin_close(conn, f"read error: {exc!r}", abort=True)
                return
            if not data:
                self._begin_close(conn, "closed by peer", flush=False)
                return
            self.counters.bytes_in += len(data)
            if not self._core_call(self.core.data_received, conn.id, data, self.now()):
                self._begin_close(conn, "core error on data", abort=True)
                return

    async def _write_loop(self, conn: _Conn) -> None:
        try:
            await self._write_until_closing(conn)
        except OSError as exc:
            conn.abort = True
            self._begin_close(conn, f"write error: {exc!r}", abort=True)
        finally:
            await self._close_socket(conn)

    async def _write_until_closing(self, conn: _Conn) -> None:
        cfg = self.config
        while True:
            if conn.closing and (conn.abort or not conn.flush or not conn.queue):
                return
            if not conn.queue:
                conn.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(cfg.read_timeout):
                        await conn.wake.wait()
                continue
            batch = self._take_batch(conn)
            conn.writer.write(batch)
            try:
                async with asyncio.timeout(cfg.write_timeout):
                    await conn.writer.drain()
            except TimeoutError:
                if not conn.closing:
                    self.counters.write_timeouts += 1
                self._begin_close(conn, "write timeout: peer not reading", abort=True)
                return
            conn.queued -= len(batch)
            self.counters.bytes_out += len(batch)

    def _take_batch(self, conn: _Conn) -> bytes:
        parts: list[bytes] = []
        size = 0
        while conn.queue and (not parts or size + len(conn.queue[0]) <= self.config.write_batch_bytes):
            part = conn.queue.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    async def _close_socket(self, conn: _Conn) -> None:
        writer = conn.writer
        if conn.abort_timer is not None:
            conn.abort_timer.cancel()
        if conn.abort:
            writer.transport.abort()
        else:
            writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.config.close_flush_timeout)
        except (TimeoutError, OSError):
            writer.transport.abort()

    # ----------------------------------------------------------------- timer and shutdown

    async def _timer_loop(self, core: CoreLike) -> None:
        loop = self._running_loop()
        while True:
            delay = core.next_deadline() - loop.time()
            if delay > 0:
                self._timer_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, self.config.max_timer_sleep)):
                        await self._timer_wake.wait()
                continue
            self._core_call(core.tick, loop.time())
            await asyncio.sleep(0)  # let I/O run even if a core keeps asking for ticks in the past

    def _shutdown(self, server: asyncio.Server, timer: asyncio.Task[None]) -> None:
        self._stopping = True
        server.close()
        timer.cancel()
        for task in list(self._dialing):
            task.cancel()
        for conn in list(self._conns.values()):
            self._begin_close(conn, "shutting down", flush=True)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop
