"""The control socket: how the CLI (or any local program) talks to a running node.

A Unix socket ``control.sock`` in the node's data directory, mode 0600 (inside a 0700 directory),
so only the node's owner can drive it. The protocol is JSON lines:

- request:  ``{"op": "bid", "args": {"auction": "1f2e", "amount": "80"}}``
- response: ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error": {"type": "RuleViolation", "message": "...", "reason": "bid_too_low"}}``

Several requests may be sent on one connection, one after the other. ``{"op": "watch", "args":
{"auction": null, "from_start": false}}`` is the one streaming request: after its response the
server sends one ``{"notification": {...}}`` line per accepted event until the client disconnects
(or ``{"end": "node stopping"}``). A watcher that reads too slowly loses the oldest notifications;
the next one it receives says how many (``"missed"``).

Ops: ping, open, bid, close, auctions, show, history, stats, status, peers, watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pauction import errors
from p2pauction.logs import get_logger

log = get_logger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 1 << 20
# sun_path is 108 bytes on Linux; longer paths go through /proc/self/fd (see _short_path).
_SUN_PATH_MAX = 100

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

_ERROR_TYPES: dict[str, type[errors.P2PAuctionError]] = {
    cls.__name__: cls for cls in (
        errors.UsageError, errors.MoneyError, errors.NotFound, errors.StoreError,
        errors.NodeUnavailable, errors.ProtocolError, errors.DecodeError, errors.P2PAuctionError)
}


def socket_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / SOCKET_NAME


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """A path string short enough for ``sun_path`` that names ``path``.

    Deep temporary directories (pytest's) exceed the limit; ``/proc/self/fd/N/name`` of an open
    directory descriptor names the same file, in any process, without changing the cwd.
    """
    text = str(path)
    if len(text.encode()) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def error_to_json(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}
    reason = getattr(exc, "reason", None)
    if reason is not None:
        out["reason"] = str(reason)
    return out


def error_from_json(data: dict[str, Any]) -> errors.P2PAuctionError:
    message = str(data.get("message", "the node reported an error"))
    kind = str(data.get("type", ""))
    if kind == "RuleViolation":
        return errors.RuleViolation(message, str(data.get("reason", "rule")))
    cls = _ERROR_TYPES.get(kind, errors.UsageError)
    if issubclass(cls, errors.DecodeError):
        return cls(message, str(data.get("reason", "malformed")))
    return cls(message)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode() + b"\n"


# --------------------------------------------------------------------------- request schema

MAX_INT = 2**63 - 1
MAX_TEXT = 4096               # longest string argument (items are at most 200 chars anyway)
MAX_DURATION_S = 10**15       # ~31 million years: keeps now + duration inside a legal ends_at


@dataclass(frozen=True, slots=True)
class Arg:
    """One request argument: its JSON types, whether it may be null or absent, and its range."""

    types: tuple[type, ...]
    required: bool = False
    nullable: bool = True
    choices: tuple[str, ...] = ()
    low: float | None = None        # numbers: inclusive bounds
    high: float | None = None

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.nullable and not self.required else "is required"
        if isinstance(value, bool) and bool not in self.types:
            return f"must be {self._names()}, not a boolean"
        if not isinstance(value, self.types):
            return f"must be {self._names()}, not {_json_type(value)}"
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                return f"is longer than {MAX_TEXT} characters"
            if self.choices and value not in self.choices:
                return f"must be one of {', '.join(self.choices)}, not {value!r}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                return "must be a finite number"
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                return f"must be between {self.low:g} and {self.high:g}, not {value!r}"
        return None

    def _names(self) -> str:
        return " or ".join({str: "a string", int: "an integer", float: "a number", bool: "true/false"}
                           .get(t, t.__name__) for t in self.types if t is not float or int not in self.types)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)


_TEXT = Arg((str,))
_NEEDED_TEXT = Arg((str,), required=True, nullable=False)
_TIME_BOUND = Arg((int, str), low=0, high=MAX_INT)   # epoch ms or ISO text (see node.to_ms)
# history comes in pages: a reply holds at most this many finished auctions
HISTORY_PAGE = 1000
MAX_HISTORY_PAGE = 10_000

# The one place that says what each op accepts; the handlers can trust their arguments' types.
OP_SCHEMAS: dict[str, dict[str, Arg]] = {
    "ping": {},
    "open": {"item": _NEEDED_TEXT, "price": _NEEDED_TEXT, "currency": _TEXT, "increment": _TEXT,
             "duration": Arg((int, float), low=0.001, high=MAX_DURATION_S)},
    "bid": {"auction": _NEEDED_TEXT, "amount": _NEEDED_TEXT},
    "close": {"auction": _NEEDED_TEXT},
    "auctions": {"status": Arg((str,), choices=("open", "closed", "disputed", "all"))},
    "show": {"auction": _NEEDED_TEXT},
    "history": {"since": _TIME_BOUND, "until": _TIME_BOUND, "limit": Arg((int,), low=1, high=MAX_HISTORY_PAGE),
                "offset": Arg((int,), low=0, high=MAX_INT)},
    "stats": {"since": _TIME_BOUND, "until": _TIME_BOUND},
    "status": {},
    "peers": {},
    "watch": {"auction": _TEXT, "from_start": Arg((bool,))},
}


def validate_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(op, args) of one request line, every argument of the right type and range; a
    ProtocolError (not JSON / not a request) or UsageError (bad op or argument) saying why."""
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise errors.ProtocolError("control request is not a JSON object") from None
    except RecursionError:
        raise errors.ProtocolError("control request is nested too deeply") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise errors.ProtocolError('control request must be {"op": NAME, "args": {...}}')
    op, args = request["op"], request.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise errors.ProtocolError("control request args must be an object")
    schema = OP_SCHEMAS.get(op)
    if schema is None:
        raise errors.UsageError(f"unknown control op {op[:64]!r} (ops: {', '.join(OP_SCHEMAS)})")
    unknown = sorted(k for k in args if k not in schema)
    if unknown:
        raise errors.UsageError(f"bad arguments for {op}: unknown {', '.join(repr(k[:64]) for k in unknown)}")
    for name, spec in schema.items():
        why = spec.problem(args.get(name))
        if why is not None:
            raise errors.UsageError(f"bad arguments for {op}: {name} {why}")
    return op, args


# --------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Limits of the control socket (AuctionNode(control_config=...)).

    ``max_clients``: connections served at once; when full, the longest-idle connection that is
    not watching is closed to admit the newcomer (if every one is watching, the newcomer is
    refused with an error line). ``idle_timeout``: seconds a connection may wait between requests.
    """

    max_clients: int = 64
    idle_timeout: float = 60.0
    max_request_bytes: int = MAX_REQUEST_BYTES


class ControlServer:
    """Serves ``ops`` (name -> async handler) and ``watch`` on the data directory's socket.

    Each client is isolated: whatever one request or one watch raises is logged and closes that
    client only; the node goes on.
    """

    def __init__(self, data_dir: Path, ops: dict[str, Handler],
                 open_watch: Callable[[str | None, bool], Any], config: ControlConfig | None = None) -> None:
        self.path = socket_path(data_dir)
        self.ops = ops
        self.open_watch = open_watch      # (auction, from_start) -> api.Subscription
        self.config = config or ControlConfig()
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._conns: dict[asyncio.Task[None], float | None] = {}   # task -> idle since (None: busy/watching)
        self.requests = 0
        self.evicted = 0
        self.refused = 0
        self.client_failures = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # We hold the data directory's lock, so a socket file left here is stale (a killed node).
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with _short_path(self.path) as addr:
            server = await asyncio.start_unix_server(self._on_client, addr, limit=self.config.max_request_bytes)
        try:
            os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.started.set()
                await self._stop.wait()  # lifetime of the service, not an I/O wait
                server.close()
                for task in list(self._conns):
                    task.cancel()
        finally:
            self._tg = None
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback so that the connection task is ours (in our TaskGroup), not asyncio's.
        if self._tg is None or self._stop.is_set():
            writer.transport.abort()
            return
        if len(self._conns) >= self.config.max_clients and not self._evict_idle():
            self.refused += 1
            with contextlib.suppress(Exception):
                writer.write(_dumps({"ok": False, "error": {"type": "NodeUnavailable", "message":
                                     f"too many control clients ({self.config.max_clients}): try again later"}}))
            writer.transport.close()
            return
        task = self._tg.create_task(self._serve(reader, writer), name="control-conn")
        self._conns[task] = asyncio.get_running_loop().time()
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._conns.pop(task, None)

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection that is not watching; False if there is none."""
        idle = [(since, i, t) for i, (t, since) in enumerate(self._conns.items()) if since is not None]
        if not idle:
            return False
        _, _, task = min(idle)
        self._conns.pop(task, None)
        task.cancel()
        self.evicted += 1
        return True

    def _mark(self, idle: bool) -> None:
        task = asyncio.current_task()
        if task is not None and task in self._conns:
            self._conns[task] = asyncio.get_running_loop().time() if idle else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_requests(reader, writer)
        except (TimeoutError, ConnectionError, OSError):
            pass
        except Exception:  # a bug reached by one client: log it, drop that client, keep the node
            self.client_failures += 1
            log.exception("control_client_failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            self._mark(idle=True)
            try:
                async with asyncio.timeout(self.config.idle_timeout):
                    line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                await self._send(writer, {"ok": False, "error": {
                    "type": "ProtocolError",
                    "message": f"control request over {self.config.max_request_bytes} bytes"}})
                return
            if not line:
                return
            self._mark(idle=False)
            try:
                op, args = validate_request(line)
            except errors.P2PAuctionError as exc:
                await self._send(writer, {"ok": False, "error": error_to_json(exc)})
                continue
            if op == "watch":
                await self._watch(args, reader, writer)
                return
            writer.write(await self._answer(op, args))
            await asyncio.wait_for(writer.drain(), 30.0)

    async def _answer(self, op: str, args: dict[str, Any]) -> bytes:
        """The encoded reply line: a reply that cannot be encoded is this op's failure too."""
        self.requests += 1
        handler = self.ops.get(op)
        if handler is None:
            return _dumps({"ok": False, "error": {"type": "UsageError", "message": f"unknown control op {op!r}"}})
        try:
            return _dumps({"ok": True, "result": await handler(args)})
        except errors.P2PAuctionError as exc:
            return _dumps({"ok": False, "error": error_to_json(exc)})
        except Exception as exc:  # a bug: report it to the client, keep the node up
            log.exception("control_op_failed", op=op)
            return _dumps({"ok": False, "error": {"type": "P2PAuctionError",
                                                  "message": f"internal error in {op}: {exc!r}"}})

    async def _watch(self, args: dict[str, Any], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            sub = self.open_watch(args.get("auction"), bool(args.get("from_start", False)))
        except errors.P2PAuctionError as exc:
            await self._send(writer, {"ok": False, "error": error_to_json(exc)})
            return
        try:
            await self._send(writer, {"ok": True, "result": {"watching": sub.auction}})
            async with asyncio.TaskGroup() as tg:
                # whichever ends first (the feed, or the client hanging up) ends the other
                forward = tg.create_task(self._forward(sub, writer))
                eof = tg.create_task(self._until_eof(reader))
                forward.add_done_callback(lambda _: eof.cancel())
                eof.add_done_callback(lambda _: forward.cancel())
        except* (TimeoutError, ConnectionError, OSError):
            pass  # the watcher went away or stopped reading: its feed ends, the node goes on
        finally:
            sub.close()

    async def _forward(self, sub: Any, writer: asyncio.StreamWriter) -> None:
        while True:
            note = await sub.get()
            if note is None:
                with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                    await self._send(writer, {"end": "node stopping"})
                return
            try:
                line = {"notification": note.to_json()}
            except Exception as exc:   # this watcher ends with a reason; the node and others go on
                log.exception("control_watch_failed", event_id=getattr(note.event, "id", None))
                with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                    await self._send(writer, {"end": f"internal error rendering a notification: {exc!r}"})
                return
            await self._send(writer, line)

    @staticmethod
    async def _until_eof(reader: asyncio.StreamReader) -> None:
        """Read (and ignore) what a watcher sends until it hangs up; bounded by the feed's life."""
        with contextlib.suppress(ConnectionError, OSError, ValueError, asyncio.LimitOverrunError):
            while await reader.read(4096):
                pass

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, obj: Any) -> None:
        writer.write(_dumps(obj))
        await asyncio.wait_for(writer.drain(), 30.0)


# --------------------------------------------------------------------------- client


class ControlClient:
    """Blocking client of a node's control socket (what the CLI uses)."""

    def __init__(self, data_dir: Path | str, timeout: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        path = socket_path(self.data_dir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            with _short_path(path) as addr:
                sock.connect(addr)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            raise errors.NodeUnavailable(no_node_message(self.data_dir)) from exc
        except OSError as exc:
            sock.close()
            raise errors.NodeUnavailable(f"cannot reach the node in {self.data_dir}: {exc.strerror or exc}") from exc
        return sock

    def call(self, op: str, **args: Any) -> Any:
        """Send one request; return its result or raise the node's error."""
        with self._connect() as sock, sock.makefile("rwb") as stream:
            stream.write(_dumps({"op": op, "args": args}))
            stream.flush()
            return _result(_read_line(stream, self.data_dir))

    def watch(self, auction: str | None = None, from_start: bool = False) -> Iterator[dict[str, Any]]:
        """Yield notification dicts (and ``{"missed": n}`` markers inside them) until the node stops."""
        sock = self._connect()
        sock.settimeout(None)  # a feed may be silent for a long time
        with sock, sock.makefile("rwb") as stream:
            stream.write(_dumps({"op": "watch", "args": {"auction": auction, "from_start": from_start}}))
            stream.flush()
            _result(_read_line(stream, self.data_dir))
            while True:
                line = stream.readline()
                if not line:
                    raise errors.NodeUnavailable(f"the node in {self.data_dir} went away")
                message = json.loads(line)
                if "notification" in message:
                    yield message["notification"]
                elif "end" in message:
                    return


def no_node_message(data_dir: Path | str) -> str:
    return (f"no node is running in {data_dir} "
            f"(start one with p2pauction node --data-dir {data_dir} ...)")


def _read_line(stream: Any, data_dir: Path) -> dict[str, Any]:
    try:
        line = stream.readline()
    except TimeoutError as exc:
        raise errors.NodeUnavailable(f"the node in {data_dir} did not answer in time") from exc
    if not line:
        raise errors.NodeUnavailable(f"the node in {data_dir} closed the connection (is it stopping?)")
    try:
        message = json.loads(line)
    except json.JSONDecodeError as exc:
        raise errors.ProtocolError(f"the node in {data_dir} sent a malformed reply") from exc
    if not isinstance(message, dict):
        raise errors.ProtocolError(f"the node in {data_dir} sent a malformed reply")
    return message


def _result(message: dict[str, Any]) -> Any:
    if message.get("ok"):
        return message.get("result")
    raise error_from_json(message.get("error") or {})
