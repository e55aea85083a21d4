"""GossipCore: the sans-IO protocol engine of one node.

A router over machines, each owning its state and decisions: the links (``link.Links``:
framing, handshake, limits, liveness), membership (``membership.Membership``: active and passive
views, dialing, shuffles, the discovery node), dissemination (``dissemination.Plumtree``),
anti-entropy (``antientropy``: the summary and the replies to each message) and the catch-up of
missing ancestors (``catchup.CatchUp``), serving what peers ask for (``serving.Server``), over a
replica (``seams.ReplicaPort``). The core keeps what joins them: accepting events into the
replica (held until their batch commits) and pushing them on.

The driver (asyncio adapter or simulator) calls the input methods with the current monotonic
``now`` and drains ``take_actions()`` after each call; it calls ``tick(now)`` at
``next_deadline()``. Every accepted event must go through this core (``publish`` for local ones)
so the anti-entropy summary stays in step with the ledger.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from p2pauction.errors import ProtocolError, StoreError
from p2pauction.gossip.actions import Accepted, Action, Address, CloseConn, Dial, Send
from p2pauction.gossip.antientropy import AntiEntropy, Plan, PrefixSummary
from p2pauction.gossip.catchup import CatchUp
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import CoreCounters, ReconcileCounters
from p2pauction.gossip.dissemination import Plumtree
from p2pauction.gossip.entropy import RandBytes
from p2pauction.gossip.link import Link, Links
from p2pauction.gossip.limits import TokenBucket, jittered
from p2pauction.gossip.membership import Membership
from p2pauction.gossip.messages import (
    MAX_HOPS, EventMsg, Events, Graft, Ids, IHave, Message, Prune, RFail, RMore, RSym, RSync, RWant,
    Shuffle, ShuffleReply, Sync, Tree, Want, WantAncestors, WantPrefix,
)
from p2pauction.gossip.reconcile import Reconciler, Step
from p2pauction.gossip.riblt import SymbolCache, network_salt
from p2pauction.gossip.router import Router
from p2pauction.gossip.seams import NodeSigner, ReplicaPort
from p2pauction.gossip.serving import Server
from p2pauction.logs import get_logger

if TYPE_CHECKING:
    from p2pauction.state.events import Event
    from p2pauction.state.ledger import Outcome

log = get_logger(__name__)

__all__ = ["Accepted", "Action", "Address", "CloseConn", "Dial", "GossipConfig", "GossipCore", "Send"]


_M = TypeVar("_M", bound=Message)
_Handler = Callable[["GossipCore", Link, Message, float], None]


def _handles(kind: type[_M], handler: Callable[[GossipCore, Link, _M, float], None]) -> tuple[type[Message], _Handler]:
    """One row of the dispatch table. The cast is safe: ``on_message`` calls a handler only
    with a message whose type is exactly the row's ``kind``."""
    return kind, cast(_Handler, handler)


class GossipCore(Router):
    """A router over the links, membership, dissemination and anti-entropy machines."""

    def __init__(self, config: GossipConfig, identity: NodeSigner, replica: ReplicaPort, rng: random.Random,
                 now: float, *, entropy: RandBytes) -> None:
        """``rng`` is for protocol choices only (whom to dial, jitter); ``entropy`` for secrets and
        nonces: ``os.urandom`` in a real node, a SeededEntropy in the simulator and tests."""
        super().__init__(Links(config, identity, entropy=entropy, role="node", owner=self,
                               max_inbound=config.max_inbound, max_handshaking=config.max_handshaking))
        self.cfg = config
        self.rng = rng
        self.entropy = entropy
        self._next_housekeeping = now + config.housekeeping_interval
        self.replica = replica
        self.summary = PrefixSummary.of(config.ae_depth, replica.ledger.id_index(), replica.ledger.ids_in_order)
        self.plumtree = Plumtree(config)
        self.ev = CoreCounters()
        self.rejected_by_reason: dict[str, int] = {}
        eviction_salt = self.entropy(32)
        # The three timers draw from the rng in this order (a seeded run depends on it).
        next_shuffle = now + jittered(config.shuffle_interval, config.ae_jitter, rng)
        next_ae = now + jittered(config.ae_interval, config.ae_jitter, rng)
        next_refresh = now + jittered(config.refresh_interval, config.ae_jitter, rng)
        # Anti-entropy v2 (reconcile = "riblt"): the coded symbols of every accepted id, kept up to
        # date next to the summary; rounds open with RSYNC instead of SYNC (same timer, same rng
        # draws), and the prefix tree stays for the fallback.
        self.symbols: SymbolCache | None = None
        self.reconciler: Reconciler | None = None
        if config.reconcile == "riblt":
            self.symbols = SymbolCache(network_salt(config.net), config.reconcile_capacity)
            self.symbols.add_many(replica.ledger.ids_in_order())
            self.reconciler = Reconciler(config, self.symbols, ReconcileCounters())
        self.antientropy = AntiEntropy(config, self.summary, rng, self.ev, next_round=next_ae,
                                       opener=self._open_v2 if self.reconciler is not None else None)
        self.membership = Membership(config, self.key, self, replica.store, rng, eviction_salt=eviction_salt,
                                     counters=self.ev, link_counters=self.counters,
                                     next_shuffle=next_shuffle, next_refresh=next_refresh)
        self.catchup = CatchUp(config, self, rng, self.ev, now)
        self.server = Server(config, self, self.ev)
        self._next_pending_sweep = now + config.pending_sweep_interval
        self._held: list[tuple[Event, str | None, int, bool, str]] | None = None  # see data_received
        self.membership.learn(replica.store.known_peers(config.passive_max))

    # --- what the machines ask of the core (catchup.History, serving.ServeHost) -------------------

    def known(self, event_id: str) -> bool:
        """Accepted, or parked in the ledger's pending buffer (asking for it again is useless)."""
        return event_id in self.summary or self.replica.ledger.is_pending(event_id)

    def accepted(self, event_id: str) -> bool:
        return event_id in self.summary

    def is_pending(self, event_id: str) -> bool:
        return self.replica.ledger.is_pending(event_id)

    def get_raw(self, event_id: str) -> bytes | None:
        return self.replica.get_raw(event_id)

    def in_store_order(self, ids: Iterable[str]) -> list[str]:
        return self.summary.in_store_order(ids)

    def unsent_bytes(self, conn: int) -> int | None:
        backlog = self.links.send_backlog
        return backlog(conn) if backlog is not None else None

    # --- local inputs -----------------------------------------------------------------------------

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        # Group commit: the events accepted from one chunk are stored in one transaction and
        # held (not recorded, forwarded nor acknowledged) until it committed, so nothing is passed
        # on or acknowledged before it is durable. If the commit fails (disk full, I/O error) the
        # replica has undone them all and they are dropped: gossip or anti-entropy brings them again.
        self._held = []
        try:
            with self.replica.batch():
                self.links.data_received(conn, data, now)
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
            link = self.membership.active.get(u.origin)
            why = f"pending event never resolved ({u.reason})"
            if link is not None:
                self.links.penalise(link, self.cfg.penalty_unresolved_event, why, now)
            else:
                self.scores.penalise(["key:" + u.origin], self.cfg.penalty_unresolved_event, now)

    def publish(self, event: Event, now: float) -> Outcome:
        """Apply a locally authored event and disseminate it; returns the ledger's Outcome."""
        outcome = self.replica.receive(event)
        for ev in outcome.accepted:
            self._accept(ev, None, 0, own=ev.id == event.id, via="push", now=now)
        return outcome

    def dial_failed(self, addr: Address, now: float) -> None:
        self.membership.dial_failed(addr, now)

    # --- what the links report (LinkOwner) --------------------------------------------------------

    def on_connection(self, link: Link, now: float) -> None:
        self.membership.on_connection(link)

    def on_established(self, link: Link, now: float) -> None:
        self.membership.on_established(link, now)

    def on_link_down(self, link: Link, now: float) -> None:
        self.server.forget(link)
        if self.reconciler is not None:
            self.reconciler.forget(link.conn)
        if self.membership.on_link_down(link, now):
            assert link.key is not None
            self.catchup.peer_gone(link.key)
            self.plumtree.remove_peer(link.key, now)

    # --- the rest of what membership asks (membership.MembershipHost) -----------------------------

    def send(self, link: Link, msg: Message) -> None:
        self.links.send(link, msg)

    def close(self, link: Link, reason: str, now: float) -> None:
        self.links.close(link, reason, now)

    def dial(self, addr: str) -> None:
        self.links.emit(Dial(addr))

    def connections(self) -> Iterable[Link]:
        return self.links.connections()

    def is_banned(self, key: str, now: float) -> bool:
        return self.scores.is_banned("key:" + key, now)

    def tree_weight(self, key: str) -> int:
        return self.plumtree.tree_weight(key)

    def peer_up(self, link: Link, now: float) -> None:
        assert link.key is not None
        self.plumtree.add_peer(link.key)
        if len(self.membership.active) == 1:
            # First peer after start (or after being isolated): catch up now, not in 10 s.
            self.antientropy.reconcile_soon(now)

    # --- messages ---------------------------------------------------------------------------------

    def on_message(self, link: Link, msg: Message, now: float) -> None:
        if link is self.membership.boot:
            self.membership.on_bootstrap_message(msg, now)
            return
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
            self.catchup.note_pending(raw, link.key)
        else:
            self.ev.rejected += 1
            reason = str(outcome.reason.value if outcome.reason is not None else None)
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
            log.debug("gossip.event_rejected", reason=reason, sender=link.key[:12],
                      event_id=(outcome.event_id or "undecodable")[:16])
            self.links.penalise(link, self.cfg.penalty_invalid_event, f"invalid event ({reason})", now)
        return False

    def _accept(self, ev: Event, sender: str | None, hops: int, own: bool, via: str, *, now: float) -> None:
        if not self.summary.add(ev.id):
            return
        if self.symbols is not None:
            self.symbols.add(ev.id)
        self.ev.accepted += 1
        if own:
            self.ev.own += 1
        if via != "push":
            self.ev.ae_accepted += 1
        # Hop counts reported: 0 for own events, -1 when unknown (repaired by anti-entropy, or a
        # copy served by a node that had it so); MAX_HOPS on the wire means unknown.
        shown = -1 if via != "push" or hops >= MAX_HOPS else hops
        self.links.emit(Accepted(ev, own, shown))
        if sender is not None:
            useful = self.membership.active.get(sender)
            if useful is not None:
                useful.last_useful = now   # it delivered an event we had not seen: protect it
        if via == "ae":
            self.plumtree.on_new_event(ev.id, None)
            if self.cfg.ae_announce:
                self.plumtree.announce(ev.id, sender, now)
            return
        self.plumtree.on_new_event(ev.id, sender if via == "push" else None, now, ev.author)
        self._push(ev.id, hops, self.plumtree.broadcast(ev.id, ev.raw.decode("utf-8"), hops, sender, now), now)

    def _push(self, event_id: str, hops: int, out: list[tuple[str, Message]], now: float) -> None:
        """Send a new event's pushes; a peer over its push budget gets an IHAVE instead, so a
        burst of thousands of new events never floods its send queue (it GRAFTs, paced)."""
        for key, msg in out:
            link = self.membership.active.get(key)
            if link is None:
                continue
            if isinstance(msg, EventMsg):
                bucket = link.push_budget
                if bucket is None:
                    bucket = link.push_budget = TokenBucket(self.cfg.push_rate_bytes, self.cfg.push_burst_bytes, now)
                if self.server.backlogged(link, now) or not bucket.take(len(msg.e), now):
                    self.ev.push_deferred += 1
                    self.plumtree.defer(key, event_id, hops, now)
                    continue
            self.links.send(link, msg)

    def _on_ihave(self, link: Link, msg: IHave, now: float) -> None:
        assert link.key is not None
        self._send_to(self.plumtree.on_ihave(link.key, msg.ids, msg.hs, self.known, now))

    def _on_graft(self, link: Link, msg: Graft, now: float) -> None:
        assert link.key is not None
        ids = list(dict.fromkeys(self.plumtree.on_graft(link.key, msg.ids)))
        if len(ids) > self.cfg.ae_push_max:
            self.server.serve(link, ids, now)  # a big repair (e.g. after deferred pushes): paced
            return
        for event_id in ids[:self.server.allowance(link, len(ids), now)]:
            raw = self.replica.get_raw(event_id)
            if raw is not None:
                self.ev.graft_served += 1
                self.links.send(link, EventMsg(e=raw.decode("utf-8"), h=min(self.plumtree.hops_of(event_id) + 1, MAX_HOPS)))

    def _on_prune(self, link: Link, msg: Prune, now: float) -> None:
        assert link.key is not None
        self.plumtree.on_prune(link.key)

    def _on_shuffle(self, link: Link, msg: Shuffle, now: float) -> None:
        self.membership.on_shuffle(link, msg, now)

    def _on_shuffle_reply(self, link: Link, msg: ShuffleReply, now: float) -> None:
        self.membership.on_shuffle_reply(link, msg, now)

    # anti-entropy

    def _on_sync(self, link: Link, msg: Sync, now: float) -> None:
        self._run_plan(link, self.antientropy.on_sync(msg), now)

    def _on_tree(self, link: Link, msg: Tree, now: float) -> None:
        self._run_plan(link, self.antientropy.on_tree(msg), now)

    def _on_ids(self, link: Link, msg: Ids, now: float) -> None:
        # An id Plumtree is already fetching (announced, or GRAFTed) is not WANTed twice.
        def held_or_coming(event_id: str) -> bool:
            return self.known(event_id) or self.plumtree.fetching(event_id, now)

        self._run_plan(link, self.antientropy.on_ids(msg, held_or_coming), now)

    def _on_want(self, link: Link, msg: Want, now: float) -> None:
        self.server.serve(link, list(msg.ids), now)

    def _on_wantp(self, link: Link, msg: WantPrefix, now: float) -> None:
        self._run_plan(link, self.antientropy.on_wantp(msg), now)

    def _on_events(self, link: Link, msg: Events, now: float) -> None:
        self.ev.ae_events_received += len(msg.es)
        # A few repaired events are most likely in flight (this node's subtree lacks them too):
        # push them on like new ones. A big batch is a catch-up whose events the other peers
        # already hold: only announce those.
        # While this node is itself catching up (fetching missing ancestors), small answers are
        # pieces of a paced catch-up, not events in flight: do not push them on either.
        catching_up = self.catchup.catching_up(link.key)
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
        if new:
            # Something was missing: reconcile again soon instead of waiting a whole interval.
            self.antientropy.reconcile_soon(now)

    def _on_wanta(self, link: Link, msg: WantAncestors, now: float) -> None:
        self.server.serve(link, self.catchup.on_wanta(msg), now)

    # anti-entropy v2 (reconcile = "riblt"; binary messages reach here only then)

    def _open_v2(self, key: str, now: float) -> Message:
        """The message that opens a round with ``key`` (one of the active peers)."""
        assert self.reconciler is not None
        return self.reconciler.open(key, self.membership.active[key].conn, now)

    def _v2(self, msg: Message) -> Reconciler:
        if self.reconciler is None:
            raise ProtocolError(f"{msg.T}: this node does not run anti-entropy v2")
        return self.reconciler

    def _held_or_coming(self, now: float) -> Callable[[str], bool]:
        return lambda event_id: self.known(event_id) or self.plumtree.fetching(event_id, now)

    def _on_rsync(self, link: Link, msg: RSync, now: float) -> None:
        assert link.key is not None
        self._run_step(link, self._v2(msg).on_rsync(link.key, link.conn, msg, now, self._held_or_coming(now)), now)

    def _on_rmore(self, link: Link, msg: RMore, now: float) -> None:
        assert link.key is not None
        self._run_step(link, self._v2(msg).on_rmore(link.key, link.conn, msg, now), now)

    def _on_rsym(self, link: Link, msg: RSym, now: float) -> None:
        assert link.key is not None
        self._run_step(link, self._v2(msg).on_rsym(link.key, link.conn, msg, now, self._held_or_coming(now)), now)

    def _on_rwant(self, link: Link, msg: RWant, now: float) -> None:
        assert link.key is not None
        self._run_step(link, self._v2(msg).on_rwant(link.key, link.conn, msg, self.summary.ids_in), now)

    def _on_rfail(self, link: Link, msg: RFail, now: float) -> None:
        assert link.key is not None
        self._run_step(link, self._v2(msg).on_rfail(link.key, link.conn), now)

    def _run_step(self, link: Link, step: Step, now: float) -> None:
        for reply in step.replies:
            self.links.send(link, reply)
        if step.serve:
            self.server.serve(link, step.serve, now)
        if step.fallback:
            self.ev.ae_rounds += 1   # one prefix-tree round with that peer
            self.links.send(link, Sync(r=self.summary.root()))

    def _run_plan(self, link: Link, plan: Plan, now: float) -> None:
        for reply in plan.replies:
            self.links.send(link, reply)
        if plan.serve:
            self.server.serve(link, plan.serve, now)

    _HANDLERS: dict[type[Message], _Handler] = dict([
        _handles(EventMsg, _on_event), _handles(IHave, _on_ihave), _handles(Graft, _on_graft),
        _handles(Prune, _on_prune), _handles(Shuffle, _on_shuffle), _handles(ShuffleReply, _on_shuffle_reply),
        _handles(Sync, _on_sync), _handles(Tree, _on_tree), _handles(Ids, _on_ids), _handles(Want, _on_want),
        _handles(WantPrefix, _on_wantp), _handles(Events, _on_events), _handles(WantAncestors, _on_wanta),
        _handles(RSync, _on_rsync), _handles(RMore, _on_rmore), _handles(RSym, _on_rsym),
        _handles(RWant, _on_rwant), _handles(RFail, _on_rfail),
    ])

    # --- time -------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + self.cfg.housekeeping_interval
            self.links.check(now)
            self.membership.maintain(now)
            self._send_to(self.antientropy.tick(now, self.membership.active))
            if self.reconciler is not None:
                self.reconciler.expire(now)
            self._sweep_pending(now)
        self.server.tick(now)
        self._send_to(self.catchup.tick(now, self.membership.active))
        self._send_to(self.plumtree.tick(now, self.known))

    def _sweep_pending(self, now: float) -> None:
        """Every pending_sweep_interval: the ledger expires long-unresolved pending events."""
        if now >= self._next_pending_sweep:
            self._next_pending_sweep = now + self.cfg.pending_sweep_interval
            self.replica.sweep_pending()
            self._penalise_unresolved(now)

    def next_deadline(self) -> float:
        return min(self._next_housekeeping, self.plumtree.next_deadline(), self.server.next_deadline(),
                   self.catchup.next_deadline())

    def _send_to(self, out: Sequence[tuple[str, Message]]) -> None:
        for key, msg in out:
            link = self.membership.active.get(key)
            if link is not None:
                self.links.send(link, msg)

    # --- introspection ----------------------------------------------------------------------------

    def active_keys(self) -> list[str]:
        return list(self.membership.active)

    def peers(self) -> list[dict[str, Any]]:
        out = []
        for key, link in self.membership.active.items():
            out.append({"key": key, "addr": link.listen, "remote": link.remote_addr,
                        "outbound": link.outbound, "since": link.established_at,
                        "eager": key in self.plumtree.eager, "role": "node"})
        if self.membership.boot is not None:
            out.append({"key": self.membership.boot.key, "addr": self.membership.boot.remote_addr, "remote": self.membership.boot.remote_addr,
                        "outbound": True, "since": self.membership.boot.established_at, "eager": False,
                        "role": "bootstrap"})
        return out

    def stats(self, now: float | None = None) -> dict[str, Any]:
        t = now if now is not None else self._next_housekeeping
        return {
            "active": len(self.membership.active),
            "passive": len(self.membership.passive),
            "eager": len(self.plumtree.eager),
            "lazy": len(self.plumtree.lazy),
            "bootstrap_connected": self.membership.boot is not None,
            "events": {**self.ev.to_json(), "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
                       "summary_count": len(self.summary)},
            "plumtree": self.plumtree.counters.to_json(),
            "links": self.links.stats(t),
            **({"reconcile": self.reconciler.counters.to_json()} if self.reconciler is not None else {}),
        }
