"""Plumtree dissemination state (eager push on a tree, lazy IHAVE elsewhere, GRAFT/PRUNE repair).

Peers are known by key. Every new active peer starts eager. A duplicate EVENT moves its sender to
lazy (and we PRUNE it); an IHAVE for an id we lack starts a timer, and when it fires we GRAFT the
announcer (making it eager) so the tree repairs itself.

Plumtree's optimisation keeps the tree shallow: IHAVE carries the announcer's hop count per id;
when a lazy peer announces an event we already got through a path at least
``optimize_threshold`` hops longer than via that peer, we GRAFT it (empty id list: "push to me")
and PRUNE the peer that gave us the long path.

``mode="flood"`` pushes every event to every active peer instead (the benchmark baseline);
``mode="none"`` disseminates nothing (so anti-entropy can be tested alone).

This class only decides; it returns ``(peer_key, Message)`` pairs for the core to send.
Deterministic: peer sets are insertion-ordered dicts, timers a heap keyed by (time, sequence).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.messages import MAX_HOPS, MAX_IDS, EventMsg, Graft, IHave, Message, Prune

Out = list[tuple[str, Message]]
MAX_ANNOUNCERS = 4
UNKNOWN_HOPS = MAX_HOPS


class Plumtree:
    def __init__(self, config: GossipConfig) -> None:
        self.cfg = config
        self.mode = config.dissemination
        self.eager: dict[str, None] = {}
        self.lazy: dict[str, None] = {}
        self._queues: dict[str, list[tuple[str, int]]] = {}   # peer -> (id, hops) to announce
        self._flush_at = float("inf")
        self._missing: dict[str, list[str]] = {}     # id -> announcers not yet grafted
        self._timers: list[tuple[float, int, str]] = []
        self._timer_seq = 0
        self._received: dict[str, tuple[int, str | None]] = {}  # recent id -> (hops, from whom)
        self.pruned: dict[str, None] = {}            # peers we PRUNEd: they no longer push to us
        self._optimize_after = 0.0
        self.counters: dict[str, int] = dict.fromkeys(
            ("ihave_sent", "ihave_ids_sent", "ihave_recv", "ihave_ids_recv", "ihave_dropped",
             "graft_sent", "graft_recv", "prune_sent", "prune_recv", "missing_dropped", "optimized"), 0)

    # --- membership changes -------------------------------------------------------------------

    def add_peer(self, key: str) -> None:
        self.lazy.pop(key, None)
        self.pruned.pop(key, None)
        self.eager[key] = None

    def remove_peer(self, key: str) -> None:
        self.eager.pop(key, None)
        self.lazy.pop(key, None)
        self.pruned.pop(key, None)
        self._queues.pop(key, None)

    def tree_weight(self, key: str) -> int:
        """How much the eager tree needs this link: 0 lazy both ways ... 2 it pushes to us."""
        if key not in self.pruned:
            return 2
        return 1 if key in self.eager else 0

    def peers(self) -> list[str]:
        return [*self.eager, *self.lazy]

    def _make_eager(self, key: str) -> None:
        if key in self.lazy:
            del self.lazy[key]
            self.eager[key] = None

    def _make_lazy(self, key: str) -> None:
        if key in self.eager:
            del self.eager[key]
            self.lazy[key] = None

    def hops_of(self, event_id: str) -> int:
        """Hops of our first copy of a recent event (UNKNOWN_HOPS when forgotten or repaired)."""
        entry = self._received.get(event_id)
        return entry[0] if entry is not None else UNKNOWN_HOPS

    def _record(self, event_id: str, hops: int, sender: str | None) -> None:
        self._received[event_id] = (hops, sender)
        if len(self._received) > self.cfg.hops_memory:
            del self._received[next(iter(self._received))]

    # --- events ---------------------------------------------------------------------------------

    def broadcast(self, event_id: str, text: str, hops: int, exclude: str | None, now: float) -> Out:
        """A newly accepted event (``hops``: how far our copy travelled): push it, announce it."""
        self._record(event_id, hops, exclude)
        if self.mode == "none":
            return []
        msg = EventMsg(e=text, h=min(hops + 1, MAX_HOPS))
        if self.mode == "flood":
            return [(k, msg) for k in self.peers() if k != exclude]
        out: Out = [(k, msg) for k in self.eager if k != exclude]
        for k in self.lazy:
            if k != exclude:
                self._enqueue(k, event_id, hops, now)
        return out

    def announce(self, event_id: str, exclude: str | None, now: float) -> None:
        """Lazily announce an event to every peer (used for events repaired by anti-entropy)."""
        self._record(event_id, UNKNOWN_HOPS, None)
        if self.mode == "none":
            return
        for k in self.peers():
            if k != exclude:
                self._enqueue(k, event_id, UNKNOWN_HOPS, now)

    def defer(self, key: str, event_id: str, hops: int, now: float) -> None:
        """Announce instead of push (the peer is over its push budget); it GRAFTs what it lacks."""
        self._enqueue(key, event_id, hops, now)

    def _enqueue(self, key: str, event_id: str, hops: int, now: float) -> None:
        q = self._queues.setdefault(key, [])
        if len(q) >= self.cfg.ihave_queue_max:
            self.counters["ihave_dropped"] += 1
            return
        q.append((event_id, hops))
        if self._flush_at == float("inf"):
            self._flush_at = now + self.cfg.ihave_interval

    def on_new_event(self, event_id: str, sender: str | None) -> None:
        """First copy of an event arrived from ``sender``: it is on our tree."""
        self._missing.pop(event_id, None)
        if sender is not None and self.mode == "plumtree":
            self._make_eager(sender)

    def on_duplicate(self, sender: str) -> Out:
        if self.mode != "plumtree" or sender not in self.eager:
            return []
        self._make_lazy(sender)
        self.pruned[sender] = None
        self.counters["prune_sent"] += 1
        return [(sender, Prune())]

    def on_prune(self, sender: str) -> None:
        self.counters["prune_recv"] += 1
        if self.mode == "plumtree":
            self._make_lazy(sender)

    def on_graft(self, sender: str, ids: tuple[str, ...]) -> list[str]:
        """The sender wants these events and joins our eager set; returns the ids to send."""
        self.counters["graft_recv"] += 1
        self._make_eager(sender)
        return list(ids)

    def on_ihave(self, sender: str, ids: tuple[str, ...], hs: tuple[int, ...], known: Callable[[str], bool],
                 now: float) -> Out:
        self.counters["ihave_recv"] += 1
        self.counters["ihave_ids_recv"] += len(ids)
        out: Out = []
        for n, event_id in enumerate(ids):
            if known(event_id):
                if hs and not out and self.mode == "plumtree" and now >= self._optimize_after:
                    out = self._maybe_optimize(sender, event_id, hs[n])
                    if out:
                        # Damping: with many concurrent senders, each wants its own shortest
                        # tree; re-rooting at most this often keeps the tree from flapping.
                        self._optimize_after = now + self.cfg.optimize_cooldown
                continue
            announcers = self._missing.get(event_id)
            if announcers is None:
                if len(self._missing) >= self.cfg.missing_max:
                    self.counters["missing_dropped"] += 1
                    continue
                self._missing[event_id] = [sender]
                self._push_timer(now + self.cfg.graft_timeout, event_id)
            elif sender not in announcers and len(announcers) < MAX_ANNOUNCERS:
                announcers.append(sender)
        return out

    def _maybe_optimize(self, announcer: str, event_id: str, their_hops: int) -> Out:
        threshold = self.cfg.optimize_threshold
        entry = self._received.get(event_id)
        if threshold <= 0 or entry is None or announcer not in self.lazy:
            return []
        our_hops, source = entry
        if source is None or source == announcer or source not in self.eager:
            return []
        if their_hops + 1 + threshold > our_hops:
            return []
        self.counters["optimized"] += 1
        self.counters["graft_sent"] += 1
        self.counters["prune_sent"] += 1
        self._make_eager(announcer)
        self.pruned.pop(announcer, None)
        self._make_lazy(source)
        self.pruned[source] = None
        self._record(event_id, their_hops + 1, announcer)
        return [(announcer, Graft(ids=())), (source, Prune())]

    def _push_timer(self, at: float, event_id: str) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (at, self._timer_seq, event_id))

    # --- time -----------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        t = self._flush_at
        if self._timers and self._timers[0][0] < t:
            t = self._timers[0][0]
        return t

    def tick(self, now: float, known: Callable[[str], bool]) -> Out:
        out: Out = []
        if now >= self._flush_at:
            self._flush_at = float("inf")
            batch = max(1, min(self.cfg.ihave_batch, MAX_IDS))
            for key, q in self._queues.items():
                for i in range(0, len(q), batch):
                    chunk_ids, chunk_hs = zip(*q[i:i + batch])
                    out.append((key, IHave(ids=chunk_ids, hs=chunk_hs)))
                    self.counters["ihave_sent"] += 1
                self.counters["ihave_ids_sent"] += len(q)
            self._queues.clear()
        grafts: dict[str, list[str]] = {}
        while self._timers and self._timers[0][0] <= now:
            _, _, event_id = heapq.heappop(self._timers)
            announcers = self._missing.get(event_id)
            if announcers is None:
                continue
            if known(event_id):
                del self._missing[event_id]
                continue
            while announcers and announcers[0] not in self.eager and announcers[0] not in self.lazy:
                announcers.pop(0)  # disconnected since it announced
            if not announcers:
                del self._missing[event_id]
                continue
            target = announcers.pop(0)
            grafts.setdefault(target, []).append(event_id)
            if announcers:
                self._push_timer(now + self.cfg.graft_retry, event_id)
            else:
                del self._missing[event_id]
        for key, ids in grafts.items():
            self._make_eager(key)
            self.pruned.pop(key, None)
            for i in range(0, len(ids), MAX_IDS):
                out.append((key, Graft(ids=tuple(ids[i:i + MAX_IDS]))))
                self.counters["graft_sent"] += 1
        return out
