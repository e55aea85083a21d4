"""DiscoveryCore: the bootstrap (discovery) node, sans-IO, same connection interface as GossipCore.

Nodes connect with the ordinary handshake (this side says ``role: "bootstrap"``), ``REGISTER``
their key and listen address, send ``HEARTBEAT`` every few seconds and ask ``SAMPLE {n}``; the
answer is ``PEERS`` with a random sample of live registered peers other than the asker. An entry
expires after ``heartbeat_missed`` missed heartbeats. Registry operations are O(1) (an indexable
key list for sampling, a recency-ordered dict for expiry) so one bootstrap serves many thousands
of simulated nodes.
"""

from __future__ import annotations

import random
from typing import Any

from p2pauction.errors import ProtocolError
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import DiscoveryCounters
from p2pauction.gossip.entropy import RandBytes
from p2pauction.gossip.link import Link, Links
from p2pauction.gossip.addresses import fix_addr
from p2pauction.gossip.messages import MAX_PEERS, Heartbeat, Message, Peers, Register, Sample
from p2pauction.gossip.router import Router
from p2pauction.gossip.secure import NodeSigner


class Registry:
    """Live registrations: key -> (addr, last_seen), sampled uniformly in O(n_sample)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._seen: dict[str, tuple[str, float]] = {}  # ordered by last refresh (oldest first)
        self._keys: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def refresh(self, key: str, addr: str | None, now: float) -> None:
        old = self._seen.pop(key, None)
        if addr is None:
            if old is None:
                return
            addr = old[0]
        self._seen[key] = (addr, now)
        if key not in self._index:
            self._index[key] = len(self._keys)
            self._keys.append(key)
        if len(self._keys) > self.max_entries:
            self.remove(next(iter(self._seen)))

    def remove(self, key: str) -> None:
        self._seen.pop(key, None)
        i = self._index.pop(key, None)
        if i is None:
            return
        last = self._keys.pop()
        if i < len(self._keys):
            self._keys[i] = last
            self._index[last] = i

    def expire(self, older_than: float) -> int:
        n = 0
        while self._seen:
            key = next(iter(self._seen))
            if self._seen[key][1] >= older_than:
                break
            self.remove(key)
            n += 1
        return n

    def sample(self, n: int, exclude: str | None, rng: random.Random) -> list[tuple[str, str]]:
        size = len(self._keys)
        picks = rng.sample(range(size), min(size, n + 1))
        out: list[tuple[str, str]] = []
        for i in picks:
            key = self._keys[i]
            if key != exclude and len(out) < n:
                out.append((key, self._seen[key][0]))
        return out


class DiscoveryCore(Router):
    """A router over the links machine and the registry."""

    def __init__(self, config: GossipConfig, identity: NodeSigner, rng: random.Random, now: float, *,
                 entropy: RandBytes) -> None:
        super().__init__(Links(config, identity, entropy=entropy, role="bootstrap", owner=self,
                               max_inbound=config.discovery_max_inbound,
                               max_handshaking=config.discovery_max_handshaking))
        self.cfg = config
        self.rng = rng
        self._next_housekeeping = now + config.housekeeping_interval
        self.registry = Registry(config.discovery_max_entries)
        self.disc = DiscoveryCounters()

    # --- what the links report (LinkOwner) ------------------------------------------------------

    def on_connection(self, link: Link, now: float) -> None:
        pass

    def on_established(self, link: Link, now: float) -> None:
        if link.role != "node":
            self.links.close(link, "a discovery node only serves nodes", now)

    def on_message(self, link: Link, msg: Message, now: float) -> None:
        assert link.key is not None
        if isinstance(msg, Register):
            if msg.key != link.key:
                raise ProtocolError("REGISTER for a key other than the one authenticated")
            addr = fix_addr(msg.addr, link.remote_addr)
            if addr is not None:
                self.disc.registered += 1
                self.registry.refresh(link.key, addr, now)
        elif isinstance(msg, Heartbeat):
            self.disc.heartbeats += 1
            self.registry.refresh(link.key, None, now)
        elif isinstance(msg, Sample):
            self.disc.samples += 1
            peers = self.registry.sample(min(msg.n, MAX_PEERS), link.key, self.rng)
            self.links.send(link, Peers(peers=tuple(peers)))
        else:
            raise ProtocolError(f"{msg.T} is not a discovery message")

    def on_link_down(self, link: Link, now: float) -> None:
        pass   # a registration outlives its connection until its heartbeats stop

    # --- time -----------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + self.cfg.housekeeping_interval
            self.links.check(now)
            horizon = self.cfg.heartbeat_interval * self.cfg.heartbeat_missed
            self.disc.expired += self.registry.expire(now - horizon)

    def next_deadline(self) -> float:
        return self._next_housekeeping

    def stats(self, now: float | None = None) -> dict[str, Any]:
        t = now if now is not None else self._next_housekeeping
        return {"registered": len(self.registry), **self.disc.to_json(), "links": self.links.stats(t)}

    def peers(self) -> list[dict[str, Any]]:
        return [{"key": x.key, "remote": x.remote_addr, "since": x.established_at, "role": x.role}
                for x in self.links.connections() if x.established]
