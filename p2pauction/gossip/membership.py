"""Membership (HyParView-flavoured): who this node is linked to, and whom it dials next.

The *active view* is the set of handshaken node links (target 6, min 3, max 12, ``outbound_slots``
of them dialed by us); the *passive view* a bounded set of known-but-idle peers ``key -> address``,
fed by discovery samples, shuffles, handshake addresses and the store. :class:`Membership` is the
machine that keeps both: it admits or refuses established links, dials from the passive view when
below the target degree, talks to a discovery node (REGISTER, HEARTBEAT, SAMPLE), shuffles, and
mixes the overlay (refresh). It is sans-IO: what it does goes through its host
(:class:`MembershipHost`, the core), called in the order the decisions are made, so a decision
that closes a link sees that link's consequences (views, scores) before it goes on.

Eviction from the passive view when full is random (from the core's rng) so an attacker cannot
flush it deterministically; iteration order is insertion order (dicts), never hash order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Protocol

from p2pauction.errors import ProtocolError
from p2pauction.gossip.addresses import fix_addr
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import CoreCounters, LinkCounters
from p2pauction.gossip.eviction import EvictionCandidate, select_inbound_to_evict
from p2pauction.gossip.limits import Backoff, jittered
from p2pauction.gossip.link import Link
from p2pauction.gossip.messages import (
    MAX_PEERS, Heartbeat, Message, Peers, Register, Sample, Shuffle, ShuffleReply,
)
from p2pauction.gossip.seams import PeerBook


class PassiveView:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._peers: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, key: str) -> bool:
        return key in self._peers

    def items(self) -> list[tuple[str, str]]:
        return list(self._peers.items())

    def get(self, key: str) -> str | None:
        return self._peers.get(key)

    def add(self, key: str, addr: str, rng: random.Random) -> None:
        if key in self._peers:
            self._peers[key] = addr
            return
        if len(self._peers) >= self.max_size:
            victim = rng.choice(list(self._peers))
            del self._peers[victim]
        self._peers[key] = addr

    def remove(self, key: str) -> None:
        self._peers.pop(key, None)

    def sample(self, n: int, rng: random.Random) -> list[tuple[str, str]]:
        items = list(self._peers.items())
        if len(items) <= n:
            return items
        return rng.sample(items, n)


class MembershipHost(Protocol):
    """What the membership machine asks of the core that runs it."""

    def send(self, link: Link, msg: Message) -> None: ...

    def close(self, link: Link, reason: str, now: float) -> None:
        """Close a link; its ``on_link_down`` comes back before this returns."""
        ...

    def dial(self, addr: str) -> None: ...

    def connections(self) -> Iterable[Link]:
        """Every connection the core holds (handshaking, established, closing)."""
        ...

    def is_banned(self, key: str, now: float) -> bool: ...

    def tree_weight(self, key: str) -> int:
        """How much dissemination needs the link to this peer (0 least); see Plumtree."""
        ...

    def peer_up(self, link: Link, now: float) -> None:
        """``link`` joined the active view (dissemination and anti-entropy take it on)."""
        ...


class Membership:
    """The active and passive views and every decision about links: see the module docstring."""

    def __init__(self, config: GossipConfig, key: str, host: MembershipHost, peer_book: PeerBook,
                 rng: random.Random, *, eviction_salt: bytes, counters: CoreCounters,
                 link_counters: LinkCounters, next_shuffle: float, next_refresh: float) -> None:
        self.cfg = config
        self.key = key
        self.host = host
        self.peer_book = peer_book
        self.rng = rng
        self.ev = counters
        self.link_counters = link_counters
        self.passive = PassiveView(config.passive_max)
        self.backoff = Backoff(base=config.dial_backoff_base, cap=config.dial_backoff_cap)
        self.active: dict[str, Link] = {}         # key -> established node link
        # Eclipse resistance (see GossipConfig.outbound_slots and _admit_inbound).
        self._outbound_min = min(config.outbound_slots, config.target_degree)
        self._inbound_share = config.max_degree - self._outbound_min
        self._eviction_salt = eviction_salt       # which network groups are protected: secret
        self._dialing: dict[str, float] = {}      # addr -> when dialed
        self._dial_fails: dict[str, int] = {}
        self.boot: Link | None = None             # link to a discovery node
        self._boot_dialing: str | None = None
        self._boot_index = 0
        self._seed_nodes: dict[str, None] = {}    # bootstrap addresses that turned out to be nodes
        self._last_sample = -1e18
        self._next_heartbeat = 0.0
        self._next_shuffle = next_shuffle
        self._next_refresh = next_refresh
        self._refresh_dials: dict[str, None] = {}

    def learn(self, peers: Iterable[tuple[str, str]]) -> None:
        """Peers met before (the store's), as dial candidates."""
        for key, addr in peers:
            if key != self.key:
                self.passive.add(key, addr, self.rng)

    # --- inputs from the links ------------------------------------------------------------------

    def dial_failed(self, addr: str, now: float) -> None:
        self._dialing.pop(addr, None)
        self.ev.dial_failures += 1
        self.backoff.failed(addr, now, self.rng.uniform(0.0, 0.25))
        if addr == self._boot_dialing:
            self._boot_dialing = None
            self._boot_index += 1
            return
        fails = self._dial_fails.get(addr, 0) + 1
        self._dial_fails[addr] = fails
        if fails >= 4:  # a dead address: forget it (shuffles and discovery re-teach live ones)
            self._dial_fails.pop(addr, None)
            for key, a in self.passive.items():
                if a == addr:
                    self.passive.remove(key)
        if len(self._dial_fails) > 4096:
            del self._dial_fails[next(iter(self._dial_fails))]

    def on_connection(self, link: Link) -> None:
        if link.outbound:
            self._dialing.pop(link.remote_addr, None)
            if link.remote_addr == self._boot_dialing:
                link.bootstrap_dial = True
                self._boot_dialing = None

    def on_established(self, link: Link, now: float) -> None:
        assert link.key is not None and link.peer is not None
        if link.peer.role == "bootstrap":
            if not link.outbound or self.boot is not None:
                self.host.close(link, "unexpected discovery-node connection", now)
                return
            self.boot = link
            self.backoff.succeeded(link.remote_addr)
            self.host.send(link, Register(key=self.key, addr=self.cfg.listen_addr))
            self._next_heartbeat = now + self.cfg.heartbeat_interval
            self._ask_sample(now, force=True)
            return
        if not link.outbound and not self._admit_inbound(link, now):
            return
        if link.bootstrap_dial:
            self._seed_nodes[link.remote_addr] = None
        link.listen = link.dial_addr if link.outbound else fix_addr(link.peer.addr, link.remote_addr)
        if link.outbound:
            self.backoff.succeeded(link.remote_addr)
            self._dial_fails.pop(link.remote_addr, None)
        self.active[link.key] = link
        self.passive.remove(link.key)
        self.host.peer_up(link, now)
        if link.outbound and link.remote_addr in self._refresh_dials:
            del self._refresh_dials[link.remote_addr]
            self._drop_one_for_refresh(link, now)
        if link.listen is not None:
            self.peer_book.remember_peer(link.key, link.listen, now)
        if len(self.passive) < self.cfg.target_degree:
            self._send_shuffle(link, now)  # a joining node learns peers at once, not after 10 s
        if len(self.active) > self.cfg.max_degree:
            self._drop_links(len(self.active) - self.cfg.max_degree, link, "over the maximum degree", now,
                             inbound_first=True)

    def _admit_inbound(self, link: Link, now: float) -> bool:
        """Room for a new inbound node link: when the inbound share is full, evict the inbound
        peer that eviction.select_inbound_to_evict picks (never an outbound one: those slots
        are ours), or refuse the newcomer when every inbound peer is protected."""
        inbound = [x for x in self.active.values() if not x.outbound]
        if len(inbound) < self._inbound_share:
            return True
        candidates = [EvictionCandidate(key=x.key or "", ip=x.ip, inbound=True,
                                        connected_at=x.established_at or 0.0, last_useful=x.last_useful)
                      for x in inbound]
        victim = select_inbound_to_evict(candidates, self._eviction_salt) if candidates else None
        if victim is None:
            self.host.close(link, "no inbound slot free (every inbound peer is protected)", now)
            return False
        self.link_counters.inbound_evicted += 1
        self.host.close(self.active[victim], "evicted for a newcomer (inbound slots full)", now)
        return True

    def on_link_down(self, link: Link, now: float) -> bool:
        """A link closed; True when it was in the active view (it has left it now)."""
        if link is self.boot:
            self.boot = None
            self.backoff.failed(link.remote_addr, now, self.rng.uniform(0.0, 0.25))
            self._boot_index += 1
            return False
        if link.outbound and not link.authenticated:
            self.backoff.failed(link.remote_addr, now, self.rng.uniform(0.0, 0.25))
        if link.bootstrap_dial and not link.authenticated:
            self._boot_index += 1
        if link.key is None or self.active.get(link.key) is not link:
            return False
        del self.active[link.key]
        if link.listen is not None and not self.host.is_banned(link.key, now):
            self.passive.add(link.key, link.listen, self.rng)
        return True

    # --- messages -------------------------------------------------------------------------------

    def on_bootstrap_message(self, msg: Message, now: float) -> None:
        if isinstance(msg, Peers):
            self._merge_peers(msg.peers, now)
            return
        raise ProtocolError(f"{msg.T} from a discovery node")

    def on_shuffle(self, link: Link, msg: Shuffle, now: float) -> None:
        self.host.send(link, ShuffleReply(peers=tuple(self._peer_sample(exclude=link.key))))
        self._merge_peers(msg.peers, now, sender=link)

    def on_shuffle_reply(self, link: Link, msg: ShuffleReply, now: float) -> None:
        self._merge_peers(msg.peers, now, sender=link)

    def _peer_sample(self, exclude: str | None) -> list[tuple[str, str]]:
        n = self.cfg.shuffle_size
        active = [(k, x.listen) for k, x in self.active.items() if x.listen is not None and k != exclude]
        pool = active if len(active) <= n // 2 else self.rng.sample(active, n // 2)
        passive = [(k, a) for k, a in self.passive.sample(n, self.rng) if k != exclude]
        out = pool + passive[:n - len(pool)]
        if self.cfg.listen_addr is not None:
            out.append((self.key, self.cfg.listen_addr))
        return out[:MAX_PEERS]

    def _send_shuffle(self, link: Link, now: float) -> None:
        self.ev.shuffles += 1
        self.host.send(link, Shuffle(peers=tuple(self._peer_sample(exclude=link.key))))

    def _merge_peers(self, peers: tuple[tuple[str, str], ...], now: float, sender: Link | None = None) -> None:
        for key, addr in peers:
            if key == self.key or key in self.active or self.host.is_banned(key, now):
                continue
            if sender is not None and key == sender.key:
                continue  # already connected to it
            self.passive.add(key, addr, self.rng)

    def _ask_sample(self, now: float, force: bool = False) -> None:
        if self.boot is None or self.boot.closed:
            return
        if force or now - self._last_sample >= self.cfg.sample_interval:
            self._last_sample = now
            self.ev.samples_asked += 1
            self.host.send(self.boot, Sample(n=min(self.cfg.sample_size, MAX_PEERS)))

    # --- time -----------------------------------------------------------------------------------

    def maintain(self, now: float) -> None:
        """Every housekeeping tick: dial toward the target degree, keep the discovery node and
        the degree bounds, heartbeat, shuffle, refresh."""
        cfg = self.cfg
        if self._dialing:
            for addr in [a for a, t in self._dialing.items() if now - t > 60.0]:
                del self._dialing[addr]  # the driver never answered this dial: stop waiting for it
            if self._boot_dialing is not None and self._boot_dialing not in self._dialing:
                self._boot_dialing = None
        n_active = len(self.active)
        n_outbound = sum(1 for x in self.active.values() if x.outbound)
        if n_active < cfg.target_degree or n_outbound < self._outbound_min:
            handshaking_out = sum(1 for x in self.host.connections()
                                  if x.outbound and x.handshaking and not x.bootstrap_dial)
            pending = len(self._dialing) - (self._boot_dialing is not None) + handshaking_out
            # Enough links, and enough of them dialed by us (inbound peers cannot take them).
            want = max(cfg.target_degree - n_active, self._outbound_min - n_outbound) - pending
            if want > 0:
                self._dial_passive(min(want, cfg.dials_per_tick), now)
            self._ask_sample(now)
        self._maintain_bootstrap(n_active, now)
        if n_active > cfg.max_degree:
            self._drop_links(n_active - cfg.max_degree, None, "over the maximum degree", now, inbound_first=True)
        if self.boot is not None and now >= self._next_heartbeat:
            self._next_heartbeat = now + cfg.heartbeat_interval
            self.host.send(self.boot, Heartbeat())
        if now >= self._next_shuffle:
            self._next_shuffle = now + jittered(cfg.shuffle_interval, cfg.ae_jitter, self.rng)
            if self.active:
                self._send_shuffle(self.rng.choice(list(self.active.values())), now)
        if cfg.refresh_interval > 0 and now >= self._next_refresh:
            self._refresh(now)

    def _refresh(self, now: float) -> None:
        """Mix the overlay: one new random link, then (once it is up) one lazy link dropped."""
        self._next_refresh = now + jittered(self.cfg.refresh_interval, self.cfg.ae_jitter, self.rng)
        self._ask_sample(now, force=True)
        if not self.cfg.target_degree <= len(self.active) < self.cfg.max_degree:
            return
        for addr in self._dial_passive(1, now):
            self._refresh_dials[addr] = None
        if len(self._refresh_dials) > 16:
            del self._refresh_dials[next(iter(self._refresh_dials))]

    def _drop_one_for_refresh(self, new: Link, now: float) -> None:
        if len(self.active) > self.cfg.target_degree:
            self._drop_links(1, new, "overlay refresh", now)

    def _drop_links(self, n: int, keep: Link | None, reason: str, now: float, *,
                    inbound_first: bool = False) -> None:
        """Close ``n`` random active links, those the Plumtree eager tree needs least first
        (and, with ``inbound_first``, inbound links before any link we dialed)."""
        tiers: list[list[Link]] = [[], [], [], [], [], []]
        for key, link in self.active.items():
            if link is not keep:
                ours = 3 if inbound_first and link.outbound else 0
                tiers[ours + self.host.tree_weight(key)].append(link)
        victims: list[Link] = []
        for tier in tiers:
            victims += self.rng.sample(tier, min(n - len(victims), len(tier)))
        for link in victims:
            self.host.close(link, reason, now)

    def _dial_passive(self, n: int, now: float) -> list[str]:
        connected = {x.remote_addr for x in self.host.connections() if not x.closed}
        candidates = [(k, a) for k, a in self.passive.items()
                      if k not in self.active and a not in self._dialing and a not in connected
                      and self.backoff.ready(a, now)]
        seeds = [a for a in self._seed_nodes if a not in self._dialing and a not in connected
                 and self.backoff.ready(a, now)]
        if not candidates and seeds and not self.active:
            candidates = [("", a) for a in seeds]
        dialed = []
        for _, addr in self.rng.sample(candidates, min(n, len(candidates))):
            self._dialing[addr] = now
            self.ev.dials += 1
            self.host.dial(addr)
            dialed.append(addr)
        return dialed

    def _maintain_bootstrap(self, n_active: int, now: float) -> None:
        boots = [a for a in self.cfg.bootstraps if a not in self._seed_nodes]
        if not boots and not self.cfg.bootstraps:
            return
        if self.boot is not None or self._boot_dialing is not None:
            return
        if any(x.bootstrap_dial and x.handshaking for x in self.host.connections()):
            return
        if not boots:
            # Every "bootstrap" is an ordinary node: dial one only when isolated.
            if n_active > 0:
                return
            boots = list(self.cfg.bootstraps)
        addr = boots[self._boot_index % len(boots)]
        if not self.backoff.ready(addr, now):
            return
        connected = any(x.remote_addr == addr and not x.closed for x in self.host.connections())
        if connected:
            return
        self._boot_dialing = addr
        self._dialing[addr] = now
        self.ev.bootstrap_dials += 1
        self.host.dial(addr)
