"""A tiny deterministic driver for GossipCores: in-memory pipes, a fake clock, optional loss.

Not the simulator (that lives in ``simulations/``); just enough to test the core end to end:
N nodes, one optional DiscoveryCore, links with latency, message loss per frame, partitions
(dials and frames between groups fail) and node crashes (all links drop; the store survives).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.actions import Accepted, CloseConn, Dial, Send
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.discovery import DiscoveryCore
from p2pauction.state.authoring import Author
from p2pauction.state.identity import Identity
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore

NET = "harness"


@dataclass
class Host:
    index: int
    addr: str
    identity: Any
    core: Any = None
    replica: Any = None
    store: Any = None
    up: bool = True
    group: int = 0
    accepted: list[Accepted] = field(default_factory=list)
    scheduled: float = float("inf")
    extra_config: dict[str, Any] = field(default_factory=dict)


class Harness:
    def __init__(self, n: int, *, seed: int = 1, bootstrap: bool = True, latency: tuple[float, float] = (0.01, 0.05),
                 loss: float = 0.0, config: Callable[[int], dict[str, Any]] | None = None,
                 connect: bool = True) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.latency = latency
        self.loss = loss
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._next_conn = 1
        self._pipes: dict[int, tuple[Host, int]] = {}   # conn -> (owner, peer conn)
        self._owner: dict[int, Host] = {}
        self._last_delivery: dict[int, float] = {}
        self.sent_bytes = 0
        self.accepted_at: dict[tuple[int, str], float] = {}   # (host index, event id) -> when
        self.config_for = config or (lambda i: {})
        self.boot: Host | None = None
        boots: list[str] = []
        if bootstrap:
            self.boot = Host(-1, "10.255.0.1:7000", Identity.generate(self._seed_bytes()))
            cfg = GossipConfig(net=NET, listen_addr=self.boot.addr, exempt_ips=())
            self.boot.core = DiscoveryCore(cfg, self.boot.identity, random.Random(self.rng.getrandbits(64)), self.now,
                                          entropy=SeededEntropy(self.rng.getrandbits(64)))
            boots = [self.boot.addr]
            self._schedule_tick(self.boot)
        self.hosts: list[Host] = []
        for i in range(n):
            host = Host(i, f"10.{i // 200}.{i % 200}.1:7000", Identity.generate(self._seed_bytes()))
            host.store = MemoryStore()
            self.hosts.append(host)
            host.extra_config = {"bootstraps": boots, **self.config_for(i)}
            if connect:
                self.start(host)

    def _seed_bytes(self) -> bytes:
        return self.rng.getrandbits(256).to_bytes(32, "big")

    # --- node life ------------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        cfg = GossipConfig(net=NET, listen_addr=host.addr, exempt_ips=(), **host.extra_config)
        host.replica = Replica(NET, host.store)
        host.core = GossipCore(cfg, host.identity, host.replica, random.Random(self.rng.getrandbits(64)), self.now,
                               entropy=SeededEntropy(self.rng.getrandbits(64)))
        host.up = True
        host.scheduled = float("inf")
        self._schedule_tick(host)

    def crash(self, host: Host) -> None:
        host.up = False
        for conn, owner in list(self._owner.items()):
            if owner is host:
                self._drop_conn(conn)

    def _drop_conn(self, conn: int) -> None:
        owner = self._owner.pop(conn, None)
        pipe = self._pipes.pop(conn, None)
        if owner is not None and owner.up:
            owner.core.connection_lost(conn, self.now)
            self._drain(owner)
        if pipe is not None:
            peer, peer_conn = pipe
            self._pipes.pop(peer_conn, None)
            if self._owner.pop(peer_conn, None) is not None and peer.up:
                self.at(self._lat(), lambda: self._lost(peer, peer_conn))

    def _lost(self, host: Host, conn: int) -> None:
        if host.up:
            host.core.connection_lost(conn, self.now)
            self._drain(host)

    # --- scheduling -----------------------------------------------------------------------------

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, fn))

    def _lat(self) -> float:
        return self.rng.uniform(*self.latency)

    def _schedule_tick(self, host: Host) -> None:
        t = host.core.next_deadline()
        if t < host.scheduled:
            host.scheduled = t
            core = host.core
            self._seq += 1
            heapq.heappush(self._queue, (max(t, self.now), self._seq, lambda: self._tick(host, core, t)))

    def _tick(self, host: Host, core: Any, t: float) -> None:
        if not (host.up or host is self.boot) or host.core is not core or host.scheduled != t:
            return
        host.scheduled = float("inf")
        core.tick(self.now)
        self._drain(host)

    def run(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            when, _, fn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            fn()
        self.now = t

    # --- actions --------------------------------------------------------------------------------

    def _all(self) -> list[Host]:
        return self.hosts + ([self.boot] if self.boot else [])

    def _by_addr(self, addr: str) -> Host | None:
        for h in self._all():
            if h.addr == addr:
                return h
        return None

    def _drain(self, host: Host) -> None:
        for action in host.core.take_actions():
            if isinstance(action, Send):
                self._send(host, action)
            elif isinstance(action, Dial):
                self._dial(host, action.addr)
            elif isinstance(action, CloseConn):
                self._drop_conn(action.conn)
            elif isinstance(action, Accepted):
                host.accepted.append(action)
                self.accepted_at.setdefault((host.index, action.event.id), self.now)
        self._schedule_tick(host)

    def _send(self, host: Host, action: Send) -> None:
        pipe = self._pipes.get(action.conn)
        if pipe is None:
            return
        self.sent_bytes += len(action.data)
        peer, peer_conn = pipe
        if peer.group != host.group or (self.loss and self.rng.random() < self.loss):
            return
        t = max(self.now + self._lat(), self._last_delivery.get(peer_conn, 0.0))  # in order per link
        self._last_delivery[peer_conn] = t

        def deliver() -> None:
            if peer.up and peer_conn in self._owner:
                peer.core.data_received(peer_conn, action.data, self.now)
                self._drain(peer)
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, deliver))

    def _dial(self, host: Host, addr: str) -> None:
        target = self._by_addr(addr)

        def fail() -> None:
            if host.up:
                host.core.dial_failed(addr, self.now)
                self._drain(host)
        if target is None or not target.up or target.group != host.group:
            self.at(self._lat(), fail)
            return
        a, b = self._next_conn, self._next_conn + 1
        self._next_conn += 2
        self._pipes[a] = (target, b)
        self._pipes[b] = (host, a)
        self._owner[a] = host
        self._owner[b] = target
        remote = f"{host.addr.split(':')[0]}:{40000 + a % 20000}"

        def made() -> None:
            # The dialer learns of the connection first; if the acceptor refuses it, the dialer
            # then sees it lost (never neither, as the core's driver contract requires).
            if host.up and a in self._owner:
                host.core.connection_made(a, outbound=True, remote_addr=addr, now=self.now)
                self._drain(host)
            elif host.up:
                host.core.dial_failed(addr, self.now)
                self._drain(host)
            if target.up and b in self._owner:
                target.core.connection_made(b, outbound=False, remote_addr=remote, now=self.now)
                self._drain(target)
        self.at(self._lat(), made)

    # --- workload and checks --------------------------------------------------------------------

    def publish_open(self, host: Host, item: str = "Pic") -> Any:
        author = Author(host.identity, NET)
        event = author.open(host.replica.ledger, item=item, start_price=Decimal(10),
                            wall_ms=int(self.now * 1000) + 1)
        host.core.publish(event, self.now)
        self._drain(host)
        return event

    def publish_bid(self, host: Host, auction_id: str, amount: Decimal) -> Any:
        author = Author(host.identity, NET)
        event = author.bid(host.replica.ledger, auction_id, amount, wall_ms=int(self.now * 1000) + 1)
        host.core.publish(event, self.now)
        self._drain(host)
        return event

    def up_hosts(self) -> list[Host]:
        return [h for h in self.hosts if h.up]

    def digests(self) -> set[str]:
        return {h.replica.ledger.digest_hex for h in self.up_hosts()}

    def converged(self) -> bool:
        return len(self.digests()) == 1

    def run_until_converged(self, limit: float, step: float = 0.5) -> bool:
        end = self.now + limit
        while self.now < end:
            if self.converged():
                return True
            self.run(step)
        return self.converged()

    def degrees(self) -> list[int]:
        return [len(h.core.active_keys()) for h in self.up_hosts()]
