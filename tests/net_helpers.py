"""Helpers for the real-network tests (``tests/test_network_*.py``).

``RawPeer`` speaks the wire protocol by hand from the test process (so a test can be an honest
peer, a discovery client, or a hostile one that breaks the protocol on purpose); ``NodeProc`` and
``BootstrapProc`` run services as OS processes; the ``proc_*`` functions read a process's
memory and CPU from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from p2pauction.errors import ChannelError, HandshakeError
from p2pauction.gossip.framing import FrameDecoder, decode_body, encode_body, encode_frame
from p2pauction.gossip.secure import LocalIdentity, SecureSession
from p2pauction.gossip.transport import parse_address

WAIT = 20.0


class RawPeer:
    """One TCP connection to a node or bootstrap, driven frame by frame: a real Noise handshake
    as ``identity`` (``local`` to sign another static key, as a thief would), then encrypted
    frames; ``send_raw`` sends any bytes at all. Received handshake bodies come out of ``recv``
    as ``{"t": "noise", "body": ...}``."""

    def __init__(self, identity: Any, net: str, *, local: LocalIdentity | None = None) -> None:
        self.identity = identity
        self.net = net
        self.local = local
        self.session: SecureSession | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.decoder = FrameDecoder()
        self.inbox: list[dict[str, Any]] = []
        self.last_error: str | None = None

    async def connect(self, addr: str, *, source_ip: str | None = None, rcvbuf: int | None = None) -> RawPeer:
        """Connect from ``source_ip`` (another 127.0.0.x = another host to the node); ``rcvbuf``
        shrinks our receive buffer so a peer that never reads stops the sender sooner."""
        host, port = parse_address(addr)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source_ip:
                sock.bind((source_ip, 0))
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), WAIT)
            self.reader, self.writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        return self

    def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def send(self, message: dict[str, Any]) -> None:
        """Encrypted once the handshake completed; plaintext before (what a v1 node would send)."""
        if self.session is not None and self.session.established:
            self.send_body(self.session.encrypt(encode_body(message)))
        else:
            self.send_raw(encode_frame(message))

    def send_body(self, body: bytes) -> None:
        self.send_raw(len(body).to_bytes(4, "big") + body)

    def start(self, *, role: str = "node", addr: str | None = None) -> None:
        """Send Noise message 1."""
        local = self.local or LocalIdentity.create(self.identity, os.urandom)
        self.session = SecureSession(local, initiator=True, net=self.net, addr=addr, randbytes=os.urandom,
                                     role=role)
        self.send_body(self.session.start())

    def _decode(self, body: bytes) -> dict[str, Any]:
        session = self.session
        if session is not None and session.established:
            try:
                return decode_body(session.decrypt(body))
            except ChannelError:
                if not body.startswith(b'{"t":"error"'):
                    raise
        if body.startswith(b'{"t":"error"'):
            return decode_body(body)   # a refusal in plaintext (before the remote's channel existed)
        return {"t": "noise", "body": body}

    async def drain(self, timeout: float = WAIT) -> None:
        assert self.writer is not None
        await asyncio.wait_for(self.writer.drain(), timeout)

    async def recv(self, timeout: float = WAIT) -> dict[str, Any] | None:
        """The next frame, or None at EOF / reset."""
        assert self.reader is not None
        while not self.inbox:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except (ConnectionError, OSError):
                return None
            if not data:
                return None
            self.inbox.extend(self._decode(body) for body in self.decoder.split(data))
        return self.inbox.pop(0)

    async def recv_type(self, t: str, timeout: float = WAIT) -> dict[str, Any] | None:
        """Skip frames until one of type ``t``; None at EOF (an ``error`` frame is kept in .last_error)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.01, end - loop.time()))
            if frame is None or frame.get("t") == t:
                return frame
            if frame.get("t") == "error":
                self.last_error = frame.get("reason")

    async def handshake(self, *, role: str = "node", addr: str | None = None, timeout: float = WAIT) -> bool:
        """Complete the Noise handshake; True when the remote accepted us (it answers a PING) and
        we it (its identity verified). ``last_error`` says why not."""
        self.start(role=role, addr=addr)
        m2 = await self.recv_type("noise", timeout)
        if m2 is None:
            return False
        assert self.session is not None
        try:
            m3 = self.session.receive_handshake(m2["body"])
        except HandshakeError as exc:
            self.last_error = str(exc)
            return False
        assert m3 is not None
        self.send_body(m3)
        return await self.ping(n=0, timeout=timeout)

    @property
    def remote_key(self) -> str | None:
        peer = self.session.peer if self.session is not None else None
        return peer.key if peer is not None else None

    async def ping(self, n: int = 7, timeout: float = WAIT) -> bool:
        """True when the remote answers PING with the matching PONG (it is serving us)."""
        self.send({"t": "ping", "n": n})
        pong = await self.recv_type("pong", timeout)
        return pong is not None and pong.get("n") == n

    async def closed_by_remote(self, timeout: float = WAIT) -> bool:
        """Read (discarding) until EOF; True if the remote closed within ``timeout``."""
        assert self.reader is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), max(0.01, end - loop.time()))
            except TimeoutError:
                return False
            except (ConnectionError, OSError):
                return True
            if not data:
                return True
        return False

    async def close(self) -> None:
        if self.writer is None:
            return
        self.writer.transport.abort()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


async def until(cond: Any, what: str, timeout: float = WAIT, interval: float = 0.05) -> None:
    """Poll ``cond()`` (sync or async) until truthy; AssertionError naming ``what`` on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(interval)


def proc_rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- real processes

# Loopback tests: every honest process connects from 127.0.0.1, so the per-IP caps and IP bans
# exempt it; hostile clients connect from other 127.0.0.x addresses and meet every limit.
LOOPBACK_EXEMPT = ("--set", "exempt_ips=127.0.0.1")


class Proc:
    """A p2pauction service (node or bootstrap) as its own OS process; logs go to a file."""

    def __init__(self, name: str, argv: list[str], workdir: Path, info_file: Path,
                 prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.argv = argv
        self.prefix = list(prefix)  # e.g. ["ip", "netns", "exec", NS] (which execs: same pid)
        self.workdir = workdir
        self.info_file = info_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def start(self) -> Proc:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.info_file.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen([*self.prefix, sys.executable, *self.argv], stdout=log_file,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def info(self) -> dict[str, Any] | None:
        """The service's info file, once it is serving (written after start-up, by this pid)."""
        try:
            data = json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("pid") == self.pid else None

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.info()
            if info is not None:
                return info
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def address(self) -> str:
        info = self.info()
        assert info is not None, f"{self.name} is not running"
        return str(info["listen"])

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def assert_clean_exit(self) -> None:
        """Stopped by SIGTERM: exit status 0 and no sign of leaked tasks or unhandled errors."""
        assert self.proc is not None and self.proc.poll() is not None, f"{self.name} still running"
        assert self.proc.returncode == 0, f"{self.name} exited {self.proc.returncode}:\n{self.log_tail()}"
        text = self.log_path.read_text(errors="replace")
        for sign in ("Traceback", "Task was destroyed", "never retrieved", "Unclosed", "core_call_failed"):
            assert sign not in text, f"{self.name}'s log shows {sign!r}:\n{self.log_tail()}"


class NodeProc(Proc):
    """``python -m p2pauction node`` in ``workdir/name``; driven through its control socket."""

    def __init__(self, name: str, workdir: Path, net: str, bootstraps: Sequence[str] = (),
                 settings: Sequence[str] = (), *, listen: str = "127.0.0.1:0",
                 prefix: Sequence[str] = ()) -> None:
        self.data_dir = workdir / name
        self.net = net
        self.bootstraps = list(bootstraps)
        self.settings = list(settings)
        self.listen = listen
        super().__init__(name, [], workdir, self.data_dir / "node.json", prefix)
        self._set_argv()

    def _set_argv(self) -> None:
        argv = ["-m", "p2pauction", "node", "--data-dir", str(self.data_dir), "--listen", self.listen,
                "--net", self.net, "--name", self.name, "--log-format", "json", *LOOPBACK_EXEMPT]
        for b in self.bootstraps:
            argv += ["--bootstrap", b]
        for s in self.settings:
            argv += ["--set", s]
        self.argv = argv

    def restart(self, bootstraps: Sequence[str] | None = None) -> NodeProc:
        if bootstraps is not None:
            self.bootstraps = list(bootstraps)
            self._set_argv()
        self.start()
        return self

    def call(self, op: str, **args: Any) -> Any:
        """One control request; the reply is validated against the CLI output schema."""
        from p2pauction.control import ControlClient
        from tests.cli_schema import OP_COMMANDS, validate_output

        reply = ControlClient(self.data_dir, timeout=30.0).call(op, **args)
        if op in OP_COMMANDS:
            validate_output(OP_COMMANDS[op], reply)
        return reply

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))


class BootstrapProc(Proc):
    """``python -m p2pauction.bootstrap`` (the runner behind ``p2pauction bootstrap``)."""

    def __init__(self, name: str, workdir: Path, net: str, settings: Sequence[str] = (), *,
                 listen: str = "127.0.0.1:0", prefix: Sequence[str] = ()) -> None:
        argv = ["-m", "p2pauction.bootstrap", "--listen", listen, "--net", net,
                "--info-dir", str(workdir / name), "--log-format", "json", *LOOPBACK_EXEMPT]
        for s in settings:
            argv += ["--set", s]
        super().__init__(name, argv, workdir, workdir / name / "bootstrap.json", prefix)


T = TypeVar("T")
P = TypeVar("P", bound="Proc")


def run_bounded(coro: Awaitable[T], timeout: float) -> T:
    """Run ``coro`` in a fresh event loop; a hang fails after ``timeout`` seconds."""
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(bounded())


@contextlib.contextmanager
def running(proc: P) -> Iterator[P]:
    """Start ``proc``, wait until it is ready, and stop it at the end whatever happens."""
    proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def wait_for(cond: Any, what: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Blocking poll of ``cond()`` until truthy (returned); AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(interval)
