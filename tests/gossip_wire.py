"""Helpers for gossip tests that talk to a core frame by frame (a hand-driven peer)."""

from __future__ import annotations

import random
from typing import Any

from p2pauction.gossip import handshake
from p2pauction.gossip.actions import CloseConn, Send
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.framing import FrameDecoder, encode_frame
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
    return GossipCore(cfg, identity(n), Replica(cfg.net, MemoryStore()), random.Random(n), now)


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
    """A hand-driven remote: speaks frames to one connection of a core."""

    def __init__(self, core: Any, conn: int, ident: Any, *, net: str = NET, remote: str = "10.9.9.9:5000",
                 now: float = 0.0) -> None:
        self.core, self.conn, self.ident, self.net = core, conn, ident, net
        self.decoder = FrameDecoder()
        self.inbox: list[dict[str, Any]] = []
        self.closed: str | None = None
        self.nonce = "ab" * 32
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
                new.extend(self.decoder.feed(action.data))
            elif isinstance(action, CloseConn):
                self.closed = action.reason
        self.inbox.extend(new)
        return new

    def send(self, message: dict[str, Any], now: float = 0.0) -> list[dict[str, Any]]:
        return self.send_bytes(encode_frame(message), now)

    def send_bytes(self, data: bytes, now: float = 0.0) -> list[dict[str, Any]]:
        self.core.data_received(self.conn, data, now)
        return self.collect()

    def their_hello(self) -> dict[str, Any]:
        return next(m for m in self.inbox if m["t"] == "hello")

    def handshake(self, now: float = 0.0, *, ver: int = 1, sig: str | None = None) -> None:
        self.send({"t": "hello", "net": self.net, "ver": ver, "key": self.ident.public_hex,
                   "addr": None, "nonce": self.nonce, "role": "node"}, now)
        if self.closed is None:
            auth = handshake.make_auth(self.ident, self.their_hello()["nonce"], self.net)
            self.send({"t": "auth", "sig": sig or auth.sig}, now)
