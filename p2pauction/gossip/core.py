"""GossipCore: the sans-IO protocol engine of one node.

It composes the link layer (framing, handshake, limits: ``link.py``), membership (active view of
handshaken node links, bounded passive view, shuffles, bootstrap discovery), Plumtree
dissemination (``dissemination.py``) and anti-entropy (``antientropy.py``) over a Replica.

The driver (asyncio adapter or simulator) calls the input methods with the current monotonic
``now`` and drains ``take_actions()`` after each call; it calls ``tick(now)`` at
``next_deadline()``. Every accepted event must go through this core (``publish`` for local ones)
so the anti-entropy summary stays in step with the ledger.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from p2pauction.errors import ProtocolError, StoreError
from p2pauction.gossip import antientropy
from p2pauction.gossip.actions import Accepted, Action, Address, CloseConn, Dial, Send
from p2pauction.gossip.antientropy import HeldFilter, PrefixSummary
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import CoreCounters
from p2pauction.gossip.dissemination import Plumtree
from p2pauction.gossip.entropy import RandBytes
from p2pauction.gossip.eviction import EvictionCandidate, select_inbound_to_evict
from p2pauction.gossip.limits import Backoff, TokenBucket
from p2pauction.gossip.link import Link, LinkHost
from p2pauction.gossip.membership import PassiveView, fix_addr
from p2pauction.gossip.messages import (
    MAX_ANCESTOR_IDS, MAX_EVENTS, MAX_HELD_HEX, MAX_HOPS, MAX_PEERS, EventMsg, Events, Graft, Heartbeat, Ids,
    IHave, Message, Peers, Prune, Register, Sample, Shuffle, ShuffleReply, Sync, Tree, Want, WantAncestors,
    WantPrefix,
)
from p2pauction.gossip.seams import NodeSigner, ReplicaPort
from p2pauction.logs import get_logger

if TYPE_CHECKING:
    from p2pauction.state.events import Event
    from p2pauction.state.ledger import Outcome

log = get_logger(__name__)

__all__ = ["Accepted", "Action", "Address", "CloseConn", "Dial", "GossipConfig", "GossipCore", "Send"]

_DEPS_MEMO = 16_384   # event id -> deps, for walking ancestors without decoding each time


@dataclass(slots=True)
class _MissingDep:
    """A dep some pending event waits for: which event, how high in its chain, who sent it."""

    waiter: str
    lamport: int
    sender: str | None


class GossipCore(LinkHost):
    ROLE = "node"

    def __init__(self, config: GossipConfig, identity: NodeSigner, replica: ReplicaPort, rng: random.Random,
                 now: float, *, entropy: RandBytes) -> None:
        super().__init__(config, identity, rng, now, entropy=entropy)
        self.replica = replica
        self.summary = PrefixSummary(config.ae_depth)
        self.plumtree = Plumtree(config)
        self.passive = PassiveView(config.passive_max)
        self.backoff = Backoff(base=config.dial_backoff_base, cap=config.dial_backoff_cap)
        self.ev = CoreCounters()
        self.rejected_by_reason: dict[str, int] = {}
        self._active: dict[str, Link] = {}        # key -> established node link
        # Eclipse resistance (see GossipConfig.outbound_slots and _admit_inbound).
        self._outbound_min = min(config.outbound_slots, config.target_degree)
        self._inbound_share = config.max_degree - self._outbound_min
        self._eviction_salt = self.entropy(32)   # which network groups are protected: secret
        self._dialing: dict[str, float] = {}      # addr -> when dialed
        self._dial_fails: dict[str, int] = {}
        self._boot: Link | None = None            # link to a discovery node
        self._boot_dialing: str | None = None
        self._boot_index = 0
        self._seed_nodes: dict[str, None] = {}    # bootstrap addresses that turned out to be nodes
        self._last_sample = -1e18
        self._next_heartbeat = 0.0
        self._next_shuffle = now + self._jittered(config.shuffle_interval)
        self._next_ae = now + self._jittered(config.ae_interval)
        self._next_refresh = now + self._jittered(config.refresh_interval)
        self._refresh_dials: dict[str, None] = {}
        # dependency-aware catch-up (see _fetch_missing)
        self._missing_deps: dict[str, _MissingDep] = {}   # insertion order = age
        self._pending_ids: dict[str, None] = {}           # events we hold as pending (WANTA's filter)
        self._fetching: dict[str, float] = {}             # dep id -> when it may be asked again
        self._fetch_req: dict[str, tuple[float, tuple[str, ...]]] = {}  # peer -> (deadline, ids asked)
        self._next_fetch = now
        self._deps_memo: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        # links with events waiting to be served (paced, see _drain_serve)
        self._serving: dict[int, Link] = {}
        self._next_serve = float("inf")
        self._next_pending_sweep = now + config.pending_sweep_interval
        self._held: list[tuple[Event, str | None, int, bool, str]] | None = None  # see data_received
        self.summary.add_many(replica.ledger.ids_in_order())
        for key, addr in replica.store.known_peers(config.passive_max):
            if key != self.key:
                self.passive.add(key, addr, rng)

    def _known(self, event_id: str) -> bool:
        """Accepted, or parked in the ledger's pending buffer (asking for it again is useless)."""
        return event_id in self.summary or self.replica.ledger.is_pending(event_id)

    def _jittered(self, interval: float) -> float:
        j = self.cfg.ae_jitter
        return interval * (1.0 + self.rng.uniform(-j, j))

    # --- local inputs -------------------------------------------------------------------------

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        # Group commit: the events accepted from one chunk are stored in one transaction and
        # held (not recorded, forwarded nor acknowledged) until it committed, so nothing is passed
        # on or acknowledged before it is durable. If the commit fails (disk full, I/O error) the
        # replica has undone them all and they are dropped: gossip or anti-entropy brings them again.
        self._held = []
        try:
            with self.replica.batch():
                super().data_received(conn, data, now)
        except StoreError as exc:
            self.ev.store_failures += 1
            log.warning("gossip.store_failed", error=str(exc)[:200], dropped=len(self._held or ()))
            self._held = None
        else:
            held, self._held = self._held, None
            for args in held:
                self._accept(*args, now=now)
        self._penalise_unresolved(now)

    def _penalise_unresolved(self, now: float) -> None:
        """Lower the score of the peers whose pending events left the buffer unresolved."""
        for u in self.replica.take_unresolved():
            if u.origin is None:
                continue
            self.ev.unresolved += 1
            if self.scores.is_banned("key:" + u.origin, now):
                continue  # already banned (its other events are being evicted now)
            link = self._active.get(u.origin)
            why = f"pending event never resolved ({u.reason})"
            if link is not None:
                self.penalise(link, self.cfg.penalty_unresolved_event, why, now)
            else:
                self.scores.penalise(["key:" + u.origin], self.cfg.penalty_unresolved_event, now)

    def publish(self, event: Event, now: float) -> Outcome:
        """Apply a locally authored event and disseminate it; returns the ledger's Outcome."""
        outcome = self.replica.receive(event)
        for ev in outcome.accepted:
            self._accept(ev, None, 0, own=ev.id == event.id, via="push", now=now)
        return outcome

    def dial_failed(self, addr: Address, now: float) -> None:
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

    # --- link hooks ---------------------------------------------------------------------------

    def _on_connection(self, link: Link, now: float) -> None:
        if link.outbound:
            self._dialing.pop(link.remote_addr, None)
            if link.remote_addr == self._boot_dialing:
                link.bootstrap_dial = True
                self._boot_dialing = None

    def _on_established(self, link: Link, now: float) -> None:
        assert link.key is not None and link.peer is not None
        if link.peer.role == "bootstrap":
            if not link.outbound or self._boot is not None:
                self._close(link, "unexpected discovery-node connection", now)
                return
            self._boot = link
            self.backoff.succeeded(link.remote_addr)
            self._send(link, Register(key=self.key, addr=self.cfg.listen_addr))
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
        self._active[link.key] = link
        self.passive.remove(link.key)
        self.plumtree.add_peer(link.key)
        if len(self._active) == 1 and self.cfg.anti_entropy:
            # First peer after start (or after being isolated): catch up now, not in 10 s.
            self._next_ae = min(self._next_ae, now + self.cfg.ae_followup)
        if link.outbound and link.remote_addr in self._refresh_dials:
            del self._refresh_dials[link.remote_addr]
            self._drop_one_for_refresh(link, now)
        if link.listen is not None:
            self.replica.store.remember_peer(link.key, link.listen, now)
        if len(self.passive) < self.cfg.target_degree:
            self._send_shuffle(link, now)  # a joining node learns peers at once, not after 10 s
        if len(self._active) > self.cfg.max_degree:
            self._drop_links(len(self._active) - self.cfg.max_degree, link, "over the maximum degree", now,
                             inbound_first=True)

    def _admit_inbound(self, link: Link, now: float) -> bool:
        """Room for a new inbound node link: when the inbound share is full, evict the inbound
        peer that eviction.select_inbound_to_evict picks (never an outbound one: those slots
        are ours), or refuse the newcomer when every inbound peer is protected."""
        inbound = [x for x in self._active.values() if not x.outbound]
        if len(inbound) < self._inbound_share:
            return True
        candidates = [EvictionCandidate(key=x.key or "", ip=x.ip, inbound=True,
                                        connected_at=x.established_at or 0.0, last_useful=x.last_useful)
                      for x in inbound]
        victim = select_inbound_to_evict(candidates, self._eviction_salt) if candidates else None
        if victim is None:
            self._close(link, "no inbound slot free (every inbound peer is protected)", now)
            return False
        self.counters.inbound_evicted += 1
        self._close(self._active[victim], "evicted for a newcomer (inbound slots full)", now)
        return True

    def _on_link_down(self, link: Link, now: float) -> None:
        if link is self._boot:
            self._boot = None
            self.backoff.failed(link.remote_addr, now, self.rng.uniform(0.0, 0.25))
            self._boot_index += 1
            return
        if link.outbound and not link.authenticated:
            self.backoff.failed(link.remote_addr, now, self.rng.uniform(0.0, 0.25))
        if link.bootstrap_dial and not link.authenticated:
            self._boot_index += 1
        self._serving.pop(link.conn, None)
        if link.key is not None and self._active.get(link.key) is link:
            del self._active[link.key]
            self._fetch_req.pop(link.key, None)
            self.plumtree.remove_peer(link.key)
            if link.listen is not None and not self.scores.is_banned("key:" + link.key, now):
                self.passive.add(link.key, link.listen, self.rng)

    # --- messages -------------------------------------------------------------------------------

    def _on_message(self, link: Link, msg: Message, now: float) -> None:
        if link is self._boot:
            if isinstance(msg, Peers):
                self._merge_peers(msg.peers, now)
                return
            raise ProtocolError(f"{msg.T} from a discovery node")
        assert link.key is not None
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            raise ProtocolError(f"{msg.T} is not a node-to-node message")
        handler(self, link, msg, now)

    def _on_event(self, link: Link, msg: EventMsg, now: float) -> None:
        self.ev.copies_received += 1
        self._receive_text(link, msg.e, msg.h, "push", now)

    @staticmethod
    def _raw(text: str) -> bytes:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("event text is not valid Unicode") from None

    def _receive_text(self, link: Link, text: str, hops: int, via: str, now: float) -> bool:
        """Feed one event from a peer into the replica; True when it was new."""
        raw = self._raw(text)
        return self._outcome(link, self.replica.receive_raw(raw, origin=link.key), hops, via, now, raw)

    def _outcome(self, link: Link, outcome: Outcome, hops: int, via: str, now: float, raw: bytes) -> bool:
        """Act on the ledger's verdict on an event from ``link``; True when it was new."""
        kind = outcome.kind  # OutcomeKind is a StrEnum: compare with its values
        assert link.key is not None
        if kind == "accepted":
            for ev in outcome.accepted:
                if self._held is not None:
                    self._held.append((ev, link.key, hops, False, via))
                else:
                    self._accept(ev, link.key, hops, own=False, via=via, now=now)
            return True
        if kind == "duplicate":
            self.ev.duplicates += 1
            if via == "push":
                self._send_to(self.plumtree.on_duplicate(link.key, now))
        elif kind == "pending":
            self.ev.pending += 1
            self._note_pending(raw, link.key)
        else:
            self.ev.rejected += 1
            reason = str(outcome.reason.value if outcome.reason is not None else None)
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
            log.debug("gossip.event_rejected", reason=reason, sender=link.key[:12],
                      event_id=(outcome.event_id or "undecodable")[:16])
            self.penalise(link, self.cfg.penalty_invalid_event, f"invalid event ({reason})", now)
        return False

    def _accept(self, ev: Event, sender: str | None, hops: int, own: bool, via: str, *, now: float) -> None:
        if not self.summary.add(ev.id):
            return
        self.ev.accepted += 1
        if own:
            self.ev.own += 1
        if via != "push":
            self.ev.ae_accepted += 1
        # Hop counts reported: 0 for own events, -1 when unknown (repaired by anti-entropy, or a
        # copy served by a node that had it so); MAX_HOPS on the wire means unknown.
        shown = -1 if via != "push" or hops >= MAX_HOPS else hops
        self._actions.append(Accepted(ev, own, shown))
        if sender is not None:
            useful = self._active.get(sender)
            if useful is not None:
                useful.last_useful = now   # it delivered an event we had not seen: protect it
        if via == "ae":
            self.plumtree.on_new_event(ev.id, None)
            if self.cfg.ae_announce:
                self.plumtree.announce(ev.id, sender, now)
            return
        self.plumtree.on_new_event(ev.id, sender if via == "push" else None, now)
        self._push(ev.id, hops, self.plumtree.broadcast(ev.id, ev.raw.decode("utf-8"), hops, sender, now), now)

    def _push(self, event_id: str, hops: int, out: list[tuple[str, Message]], now: float) -> None:
        """Send a new event's pushes; a peer over its push budget gets an IHAVE instead, so a
        burst of thousands of new events never floods its send queue (it GRAFTs, paced)."""
        for key, msg in out:
            link = self._active.get(key)
            if link is None:
                continue
            if isinstance(msg, EventMsg):
                bucket = link.push_budget
                if bucket is None:
                    bucket = link.push_budget = TokenBucket(self.cfg.push_rate_bytes, self.cfg.push_burst_bytes, now)
                if self._backlogged(link, now) or not bucket.take(len(msg.e), now):
                    self.ev.push_deferred += 1
                    self.plumtree.defer(key, event_id, hops, now)
                    continue
            self._send(link, msg)

    def _on_ihave(self, link: Link, msg: IHave, now: float) -> None:
        assert link.key is not None
        self._send_to(self.plumtree.on_ihave(link.key, msg.ids, msg.hs, self._known, now))

    def _serve_allowance(self, link: Link, wanted: int, now: float) -> int:
        bucket = link.serve_budget
        if bucket is None:
            bucket = link.serve_budget = TokenBucket(self.cfg.serve_rate, self.cfg.serve_burst, now)
        n = wanted
        while n > 0 and not bucket.take(n, now):
            n //= 2
        if n < wanted:
            self.ev.serve_throttled += wanted - n
        return n

    def _on_graft(self, link: Link, msg: Graft, now: float) -> None:
        assert link.key is not None
        ids = list(dict.fromkeys(self.plumtree.on_graft(link.key, msg.ids)))
        if len(ids) > self.cfg.ae_push_max:
            self._serve(link, ids, now)  # a big repair (e.g. after deferred pushes): paced
            return
        for event_id in ids[:self._serve_allowance(link, len(ids), now)]:
            raw = self.replica.get_raw(event_id)
            if raw is not None:
                self.ev.graft_served += 1
                self._send(link, EventMsg(e=raw.decode("utf-8"), h=min(self.plumtree.hops_of(event_id) + 1, MAX_HOPS)))

    def _on_prune(self, link: Link, msg: Prune, now: float) -> None:
        assert link.key is not None
        self.plumtree.on_prune(link.key)

    def _on_shuffle(self, link: Link, msg: Shuffle, now: float) -> None:
        self._send(link, ShuffleReply(peers=tuple(self._peer_sample(exclude=link.key))))
        self._merge_peers(msg.peers, now, sender=link)

    def _on_shuffle_reply(self, link: Link, msg: ShuffleReply, now: float) -> None:
        self._merge_peers(msg.peers, now, sender=link)

    # anti-entropy

    def _on_sync(self, link: Link, msg: Sync, now: float) -> None:
        self._run_plan(link, antientropy.on_sync(self.summary, msg.r), now)

    def _on_tree(self, link: Link, msg: Tree, now: float) -> None:
        self._run_plan(link, antientropy.on_tree(self.summary, msg.nodes, expand_max=self.cfg.ae_expand_max,
                                                 serve_max=self.cfg.ae_serve_max,
                                                 ids_max=self.cfg.ae_ids_max,
                                                 start=self.rng.randrange(1 << 30)), now)

    def _on_ids(self, link: Link, msg: Ids, now: float) -> None:
        # An id Plumtree is already fetching (announced, or GRAFTed) is not WANTed twice.
        def held_or_coming(event_id: str) -> bool:
            return self._known(event_id) or self.plumtree.fetching(event_id, now)

        self._run_plan(link, antientropy.on_ids(self.summary, msg.leaves, serve_max=self.cfg.ae_serve_max,
                                                known=held_or_coming), now)

    def _on_want(self, link: Link, msg: Want, now: float) -> None:
        self._serve(link, list(msg.ids), now)

    def _on_wantp(self, link: Link, msg: WantPrefix, now: float) -> None:
        self._run_plan(link, antientropy.on_wantp(self.summary, msg.prefixes, serve_max=self.cfg.ae_serve_max), now)

    def _on_events(self, link: Link, msg: Events, now: float) -> None:
        self.ev.ae_events_received += len(msg.es)
        # A few repaired events are most likely in flight (this node's subtree lacks them too):
        # push them on like new ones. A big batch is a catch-up whose events the other peers
        # already hold: only announce those.
        # While this node is itself catching up (fetching missing ancestors), small answers are
        # pieces of a paced catch-up, not events in flight: do not push them on either.
        catching_up = bool(self._missing_deps) or link.key in self._fetch_req
        via = "ae_push" if len(msg.es) <= self.cfg.ae_push_max and not catching_up else "ae"
        raws = [self._raw(text) for text in msg.es]
        new = False
        # Small batches: one store transaction each, and a peer banned mid-message (forged
        # events) costs at most one batch of signature checks more.
        for i in range(0, len(raws), 16):
            if link.closed:
                break
            batch = raws[i:i + 16]
            outcomes = self.replica.receive_many(batch, origin=link.key)
            for raw, outcome in zip(batch, outcomes):
                # Every accepted event is recorded even if the link closed meanwhile: the
                # anti-entropy summary must stay in step with the ledger.
                new = self._outcome(link, outcome, MAX_HOPS, via, now, raw) or new
        if new and self.cfg.anti_entropy:
            # Something was missing: reconcile again soon instead of waiting a whole interval.
            self._next_ae = min(self._next_ae, now + self.cfg.ae_followup)

    def _on_wanta(self, link: Link, msg: WantAncestors, now: float) -> None:
        self.ev.wanta_served += 1
        held = HeldFilter.from_hex(msg.held)
        self._serve(link, self._ancestors(msg.ids, self.cfg.fetch_ancestors, held), now)

    def _ancestors(self, ids: Iterable[str], limit: int, held: HeldFilter) -> list[str]:
        """The accepted events among ``ids`` and their ancestors, breadth-first back, at most
        ``limit`` (the asker lacks them: they are missing deps of its pending events), stopping
        at the events the asker says it holds."""
        out = dict.fromkeys(i for i in ids if i in self.summary)
        queue = deque(out)
        while queue and len(out) < limit:
            for dep in self._deps_of(queue.popleft()):
                if dep not in out and dep in self.summary and dep not in held:
                    out[dep] = None
                    queue.append(dep)
        return list(out)[:limit]

    def _deps_of(self, event_id: str) -> tuple[str, ...]:
        from p2pauction.state.events import decode_event

        memo = self._deps_memo
        deps = memo.get(event_id)
        if deps is None:
            raw = self.replica.get_raw(event_id)
            deps = decode_event(raw).deps if raw is not None else ()
            memo[event_id] = deps
            if len(memo) > _DEPS_MEMO:
                memo.popitem(last=False)
        return deps

    def _note_pending(self, raw: bytes, sender: str | None) -> None:
        """An event parked for unknown deps: remember which deps to ask for, and from whom."""
        from p2pauction.errors import DecodeError
        from p2pauction.state.events import decode_event

        try:
            ev = decode_event(raw)
        except DecodeError:
            return
        self._pending_ids[ev.id] = None
        if len(self._pending_ids) > self.cfg.fetch_track_max:
            del self._pending_ids[next(iter(self._pending_ids))]
        missing = self._missing_deps
        for dep in ev.deps:
            if dep not in missing and not self._known(dep):
                missing[dep] = _MissingDep(ev.id, ev.lamport, sender)
        while len(missing) > self.cfg.fetch_track_max:
            self._fetching.pop(next(iter(missing)), None)
            del missing[next(iter(missing))]

    def _fetch_missing(self, now: float) -> None:
        """Ask for exactly the missing deps of pending events (WANTA: they and their ancestors).

        Each id is asked of one peer at a time (no duplicate storm), first of the peer that sent
        the waiting event (it accepted that event, so it holds every ancestor), again of another
        after ``fetch_timeout``. The ids nearest the tip go first: each answer walks a chain back
        ``fetch_ancestors`` events, so a chain of any length is fetched in bounded batches and
        every round makes progress whatever the history's shape."""
        cfg = self.cfg
        self._next_fetch = now + cfg.fetch_interval
        if not self._missing_deps or not self._active:
            return
        todo: list[tuple[int, str]] = []
        for dep, m in list(self._missing_deps.items()):
            if self._known(dep) or not self.replica.ledger.is_pending(m.waiter):
                del self._missing_deps[dep]   # arrived, or its waiter was evicted or rejected
                self._fetching.pop(dep, None)
            elif self._fetching.get(dep, -1.0) <= now:
                todo.append((m.lamport, dep))
        idle = [key for key in self._active if self._fetch_idle(key, now)]
        if not todo or not idle:
            return
        todo.sort(key=lambda t: (-t[0], t[1]))
        for pid in [p for p in self._pending_ids if not self.replica.ledger.is_pending(p)]:
            del self._pending_ids[pid]
        held = HeldFilter.of(list(self._pending_ids), MAX_HELD_HEX).to_hex()
        chunks = [[dep for _, dep in todo[i:i + MAX_ANCESTOR_IDS]]
                  for i in range(0, min(len(todo), MAX_ANCESTOR_IDS * cfg.fetch_peers), MAX_ANCESTOR_IDS)]
        for chunk in chunks:
            if not idle:
                break
            first = self._missing_deps[chunk[0]]
            key = first.sender if first.sender in idle and chunk[0] not in self._fetching else self.rng.choice(idle)
            idle.remove(key)
            ids = tuple(chunk)
            self._fetch_req[key] = (now + cfg.fetch_timeout, ids)
            for dep in ids:
                self._fetching[dep] = now + cfg.fetch_timeout
            self.ev.wanta_sent += 1
            self.ev.wanta_ids_sent += len(ids)
            self._send(self._active[key], WantAncestors(ids=ids, held=held))

    def _fetch_idle(self, key: str, now: float) -> bool:
        """Whether a peer may be asked: its last WANTA was answered in full or timed out."""
        req = self._fetch_req.get(key)
        if req is None:
            return True
        deadline, ids = req
        if now >= deadline or all(self._known(i) for i in ids):
            del self._fetch_req[key]
            return True
        return False

    def _backlogged(self, link: Link, now: float) -> bool:
        """The driver still holds much unsent for this peer: wait rather than overflow it, for
        ``serve_backlog_patience`` at most (then the transport's slow-peer rule decides)."""
        backlog = self.send_backlog
        if backlog is None or backlog(link.conn) <= self.cfg.serve_backlog_max:
            link.backlogged_since = None
            return False
        if link.backlogged_since is None:
            link.backlogged_since = now
        return now - link.backlogged_since < self.cfg.serve_backlog_patience

    def _run_plan(self, link: Link, plan: antientropy.Plan, now: float) -> None:
        for reply in plan.replies:
            self._send(link, reply)
        if plan.serve:
            self._serve(link, plan.serve, now)

    def _serve(self, link: Link, ids: list[str], now: float) -> None:
        """Queue events for ``link`` in store (causal) order; they leave paced (_drain_serve)."""
        ordered = self.summary.in_store_order(dict.fromkeys(ids))[:self.cfg.ae_serve_max]
        queue = link.serve_queue
        room = self.cfg.serve_queue_max - len(queue)
        allowed = ordered[:self._serve_allowance(link, len(ordered), now)]
        if len(allowed) > room:
            self.ev.serve_dropped += len(allowed) - room  # the asker asks again later
        for event_id in allowed[:max(0, room)]:
            queue[event_id] = None
        self.ev.serve_queued += min(len(allowed), max(0, room))
        self._drain_serve(link, now)

    def _drain_serve(self, link: Link, now: float) -> None:
        """Send what the byte pace allows of the link's queue, in frames bounded by count and
        bytes; the rest waits for the next serve tick."""
        queue = link.serve_queue
        bucket = link.serve_pace
        if bucket is None:
            bucket = link.serve_pace = TokenBucket(self.cfg.serve_pace_bytes, self.cfg.serve_pace_burst, now)
        batch: list[str] = []
        size = 0
        while queue and not link.closed and not self._backlogged(link, now):
            event_id = next(iter(queue))
            raw = self.replica.get_raw(event_id)
            if raw is not None and not bucket.take(len(raw), now):
                break
            del queue[event_id]
            if raw is None:
                continue
            if batch and (len(batch) >= MAX_EVENTS or size + len(raw) > self.cfg.events_chunk_bytes):
                self._send(link, Events(es=tuple(batch)))
                batch, size = [], 0
            batch.append(raw.decode("utf-8"))
            size += len(raw) + len(raw) // 4  # JSON escaping of quotes inflates the text a little
            self.ev.ae_events_served += 1
        if batch:
            self._send(link, Events(es=tuple(batch)))
        if queue and not link.closed:
            self._serving[link.conn] = link
            self._next_serve = min(self._next_serve, now + self.cfg.serve_tick)
        else:
            self._serving.pop(link.conn, None)

    _HANDLERS: dict[type, Any] = {
        EventMsg: _on_event, IHave: _on_ihave, Graft: _on_graft, Prune: _on_prune,
        Shuffle: _on_shuffle, ShuffleReply: _on_shuffle_reply, Sync: _on_sync, Tree: _on_tree,
        Ids: _on_ids, Want: _on_want, WantPrefix: _on_wantp, Events: _on_events, WantAncestors: _on_wanta,
    }

    # --- membership -----------------------------------------------------------------------------

    def _peer_sample(self, exclude: str | None) -> list[tuple[str, str]]:
        n = self.cfg.shuffle_size
        active = [(k, x.listen) for k, x in self._active.items() if x.listen is not None and k != exclude]
        pool = active if len(active) <= n // 2 else self.rng.sample(active, n // 2)
        passive = [(k, a) for k, a in self.passive.sample(n, self.rng) if k != exclude]
        out = pool + passive[:n - len(pool)]
        if self.cfg.listen_addr is not None:
            out.append((self.key, self.cfg.listen_addr))
        return out[:MAX_PEERS]

    def _send_shuffle(self, link: Link, now: float) -> None:
        self.ev.shuffles += 1
        self._send(link, Shuffle(peers=tuple(self._peer_sample(exclude=link.key))))

    def _merge_peers(self, peers: tuple[tuple[str, str], ...], now: float, sender: Link | None = None) -> None:
        for key, addr in peers:
            if key == self.key or key in self._active or self.scores.is_banned("key:" + key, now):
                continue
            if sender is not None and key == sender.key:
                continue  # already connected to it
            self.passive.add(key, addr, self.rng)

    def _ask_sample(self, now: float, force: bool = False) -> None:
        if self._boot is None or self._boot.closed:
            return
        if force or now - self._last_sample >= self.cfg.sample_interval:
            self._last_sample = now
            self.ev.samples_asked += 1
            self._send(self._boot, Sample(n=min(self.cfg.sample_size, MAX_PEERS)))

    def _maintain(self, now: float) -> None:
        cfg = self.cfg
        if self._dialing:
            for addr in [a for a, t in self._dialing.items() if now - t > 60.0]:
                del self._dialing[addr]  # the driver never answered this dial: stop waiting for it
            if self._boot_dialing is not None and self._boot_dialing not in self._dialing:
                self._boot_dialing = None
        n_active = len(self._active)
        n_outbound = sum(1 for x in self._active.values() if x.outbound)
        if n_active < cfg.target_degree or n_outbound < self._outbound_min:
            handshaking_out = sum(1 for x in self._links.values()
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
        if self._boot is not None and now >= self._next_heartbeat:
            self._next_heartbeat = now + cfg.heartbeat_interval
            self._send(self._boot, Heartbeat())
        if now >= self._next_shuffle:
            self._next_shuffle = now + self._jittered(cfg.shuffle_interval)
            if self._active:
                self._send_shuffle(self.rng.choice(list(self._active.values())), now)
        if cfg.refresh_interval > 0 and now >= self._next_refresh:
            self._refresh(now)
        if now >= self._next_ae:
            self._next_ae = now + self._jittered(cfg.ae_interval)
            if cfg.anti_entropy and self._active:
                self.ev.ae_rounds += 1
                self._send(self.rng.choice(list(self._active.values())), Sync(r=self.summary.root()))

    def _refresh(self, now: float) -> None:
        """Mix the overlay: one new random link, then (once it is up) one lazy link dropped."""
        self._next_refresh = now + self._jittered(self.cfg.refresh_interval)
        self._ask_sample(now, force=True)
        if not self.cfg.target_degree <= len(self._active) < self.cfg.max_degree:
            return
        for addr in self._dial_passive(1, now):
            self._refresh_dials[addr] = None
        if len(self._refresh_dials) > 16:
            del self._refresh_dials[next(iter(self._refresh_dials))]

    def _drop_one_for_refresh(self, new: Link, now: float) -> None:
        if len(self._active) > self.cfg.target_degree:
            self._drop_links(1, new, "overlay refresh", now)

    def _drop_links(self, n: int, keep: Link | None, reason: str, now: float, *,
                    inbound_first: bool = False) -> None:
        """Close ``n`` random active links, those the Plumtree eager tree needs least first
        (and, with ``inbound_first``, inbound links before any link we dialed)."""
        tiers: list[list[Link]] = [[], [], [], [], [], []]
        for key, link in self._active.items():
            if link is not keep:
                ours = 3 if inbound_first and link.outbound else 0
                tiers[ours + self.plumtree.tree_weight(key)].append(link)
        victims: list[Link] = []
        for tier in tiers:
            victims += self.rng.sample(tier, min(n - len(victims), len(tier)))
        for link in victims:
            self._close(link, reason, now)

    def _dial_passive(self, n: int, now: float) -> list[str]:
        connected = {x.remote_addr for x in self._links.values() if not x.closed}
        candidates = [(k, a) for k, a in self.passive.items()
                      if k not in self._active and a not in self._dialing and a not in connected
                      and self.backoff.ready(a, now)]
        seeds = [a for a in self._seed_nodes if a not in self._dialing and a not in connected
                 and self.backoff.ready(a, now)]
        if not candidates and seeds and not self._active:
            candidates = [("", a) for a in seeds]
        dialed = []
        for _, addr in self.rng.sample(candidates, min(n, len(candidates))):
            self._dialing[addr] = now
            self.ev.dials += 1
            self._actions.append(Dial(addr))
            dialed.append(addr)
        return dialed

    def _maintain_bootstrap(self, n_active: int, now: float) -> None:
        boots = [a for a in self.cfg.bootstraps if a not in self._seed_nodes]
        if not boots and not self.cfg.bootstraps:
            return
        if self._boot is not None or self._boot_dialing is not None:
            return
        if any(x.bootstrap_dial and x.handshaking for x in self._links.values()):
            return
        if not boots:
            # Every "bootstrap" is an ordinary node: dial one only when isolated.
            if n_active > 0:
                return
            boots = list(self.cfg.bootstraps)
        addr = boots[self._boot_index % len(boots)]
        if not self.backoff.ready(addr, now):
            return
        connected = any(x.remote_addr == addr and not x.closed for x in self._links.values())
        if connected:
            return
        self._boot_dialing = addr
        self._dialing[addr] = now
        self.ev.bootstrap_dials += 1
        self._actions.append(Dial(addr))

    # --- time -----------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + self.cfg.housekeeping_interval
            self._check_links(now)
            self._maintain(now)
            self._sweep_pending(now)
        if now >= self._next_serve:
            self._next_serve = float("inf")
            for link in list(self._serving.values()):
                self._drain_serve(link, now)
        if now >= self._next_fetch:
            self._fetch_missing(now)
        self._send_to(self.plumtree.tick(now, self._known))

    def _sweep_pending(self, now: float) -> None:
        """Every pending_sweep_interval: the ledger expires long-unresolved pending events."""
        if now >= self._next_pending_sweep:
            self._next_pending_sweep = now + self.cfg.pending_sweep_interval
            self.replica.sweep_pending()
            self._penalise_unresolved(now)

    def next_deadline(self) -> float:
        fetch = self._next_fetch if self._missing_deps else float("inf")
        return min(self._next_housekeeping, self.plumtree.next_deadline(), self._next_serve, fetch)

    def _send_to(self, out: list[tuple[str, Message]]) -> None:
        for key, msg in out:
            link = self._active.get(key)
            if link is not None:
                self._send(link, msg)

    # --- introspection --------------------------------------------------------------------------

    def active_keys(self) -> list[str]:
        return list(self._active)

    def peers(self) -> list[dict[str, Any]]:
        out = []
        for key, link in self._active.items():
            out.append({"key": key, "addr": link.listen, "remote": link.remote_addr,
                        "outbound": link.outbound, "since": link.established_at,
                        "eager": key in self.plumtree.eager, "role": "node"})
        if self._boot is not None:
            out.append({"key": self._boot.key, "addr": self._boot.remote_addr, "remote": self._boot.remote_addr,
                        "outbound": True, "since": self._boot.established_at, "eager": False,
                        "role": "bootstrap"})
        return out

    def stats(self, now: float | None = None) -> dict[str, Any]:
        t = now if now is not None else self._next_housekeeping
        return {
            "active": len(self._active),
            "passive": len(self.passive),
            "eager": len(self.plumtree.eager),
            "lazy": len(self.plumtree.lazy),
            "bootstrap_connected": self._boot is not None,
            "events": {**self.ev.to_json(), "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
                       "summary_count": len(self.summary)},
            "plumtree": self.plumtree.counters.to_json(),
            "links": self.link_stats(t),
        }
