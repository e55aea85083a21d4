"""Helpers for gossip tests that talk to a core frame by frame (a hand-driven peer)."""

from __future__ import annotations

import random
from typing import Any

from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.actions import CloseConn, Send
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.framing import FrameDecoder, decode_body, encode_body, encode_frame
from p2pauction.gossip.secure import LocalIdentity, SecureSession
from p2pauction.state.identity import Identity
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore

NET = "wire-test"


def identity(n: int) -> Any:
    return Identity.generate(bytes([n]) * 32)


def make_core(n: int, now: float = 0.0, **overrides: Any) -> GossipCore:
    overrides.setdefault("listen_addr", f"10.0.0.{n}:7000")
    overrides.setdefault("exempt_ips", ())
    cfg = GossipConfig(net=overrides.pop("net", NET), **overrides)
    return GossipCore(cfg, identity(n), Replica(cfg.net, MemoryStore()), random.Random(n), now,
                      entropy=SeededEntropy(n))


class Pipe:
    """Two cores joined by one connection (conn 1 on ``a``, conn 2 on ``b``), pumped by hand."""

    def __init__(self, a: Any, b: Any, now: float = 0.0, a_addr: str = "10.0.0.1:40001",
                 b_addr: str = "10.0.0.2:7000") -> None:
        self.a, self.b = a, b
        self.closed: dict[int, str] = {}
        a.connection_made(1, outbound=True, remote_addr=b_addr, now=now)
        b.connection_made(2, outbound=False, remote_addr=a_addr, now=now)
        self.pump(now)

    def pump(self, now: float) -> None:
        for _ in range(100):
            moved = False
            for src, conn, dst, dst_conn in ((self.a, 1, self.b, 2), (self.b, 2, self.a, 1)):
                for action in src.take_actions():
                    if isinstance(action, Send) and action.conn == conn and conn not in self.closed:
                        if dst_conn not in self.closed:
                            dst.data_received(dst_conn, action.data, now)
                        moved = True
                    elif isinstance(action, CloseConn) and action.conn == conn:
                        self.closed[conn] = action.reason
                        if dst_conn not in self.closed:
                            dst.connection_lost(dst_conn, now)
                            self.closed[dst_conn] = "lost"
                        src.connection_lost(conn, now)
                        moved = True
            if not moved:
                return


class RawPeer:
    """A hand-driven remote that dialed a core: a real Noise XX handshake as ``ident``, then
    encrypted frames (``send``), or any bytes at all (``send_bytes``, ``send_plain``)."""

    def __init__(self, core: Any, conn: int, ident: Any, *, net: str = NET, remote: str = "10.9.9.9:5000",
                 now: float = 0.0, role: str = "node", addr: str | None = None, static_of: Any = None) -> None:
        self.core, self.conn, self.ident, self.net = core, conn, ident, net
        self.decoder = FrameDecoder()
        self.inbox: list[dict[str, Any]] = []
        self.handshake_in: list[bytes] = []
        self.closed: str | None = None
        entropy = SeededEntropy(b"rawpeer" + bytes.fromhex(ident.public_hex) + conn.to_bytes(4, "big"))
        # ``static_of``: sign another node's Noise static key (what a relay or thief would try)
        local = LocalIdentity.create(ident, entropy) if static_of is None else static_of
        self.session = SecureSession(local, initiator=True, net=net, addr=addr, randbytes=entropy, role=role)
        core.connection_made(conn, outbound=False, remote_addr=remote, now=now)
        self.collect()

    def collect(self) -> list[dict[str, Any]]:
        # Actions of the core are shared by all its RawPeers: keep the others' for them.
        backlog: list[Any] = self.core.__dict__.setdefault("_wire_backlog", [])
        backlog.extend(self.core.take_actions())
        mine = [a for a in backlog if getattr(a, "conn", None) == self.conn]
        backlog[:] = [a for a in backlog if getattr(a, "conn", None) != self.conn]
        new: list[dict[str, Any]] = []
        for action in mine:
            if isinstance(action, Send) and self.closed is None:
                for body in self.decoder.split(action.data):
                    if self.session.established and not body.startswith(b'{"t":"error"'):
                        plain = self.session.decrypt(body)
                        # a binary body (anti-entropy v2) is kept as its bytes
                        new.append(decode_body(plain) if plain[:1] != b"\x00" else {"t": "binary", "body": plain})
                    elif body.startswith(b'{"t":"error"'):   # a refusal (in plaintext before the core's handshake completed)
                        new.append(decode_body(body))
                    else:
                        self.handshake_in.append(body)
            elif isinstance(action, CloseConn):
                self.closed = action.reason
        self.inbox.extend(new)
        return new

    def sealed(self, message: dict[str, Any]) -> bytes:
        """The encrypted frame carrying ``message`` (the next one in this direction)."""
        body = self.session.encrypt(encode_body(message))
        return len(body).to_bytes(4, "big") + body

    def send(self, message: dict[str, Any], now: float = 0.0) -> list[dict[str, Any]]:
        return self.send_bytes(self.sealed(message), now)

    def send_plain(self, message: dict[str, Any], now: float = 0.0) -> list[dict[str, Any]]:
        return self.send_bytes(encode_frame(message), now)

    def send_bytes(self, data: bytes, now: float = 0.0) -> list[dict[str, Any]]:
        self.core.data_received(self.conn, data, now)
        return self.collect()

    def start(self, now: float = 0.0) -> None:
        """Send Noise message 1."""
        body = self.session.start()
        self.send_bytes(len(body).to_bytes(4, "big") + body, now)

    def handshake(self, now: float = 0.0) -> None:
        """The whole handshake; afterwards ``their_identity()`` says what the core announced."""
        self.start(now)
        if self.closed is not None or not self.handshake_in:
            return
        reply = self.session.receive_handshake(self.handshake_in.pop(0))
        assert reply is not None
        self.send_bytes(len(reply).to_bytes(4, "big") + reply, now)

    def their_identity(self) -> Any:
        peer = self.session.peer
        assert peer is not None, "the handshake did not complete"
        return peer
