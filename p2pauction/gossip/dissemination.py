"""Plumtree dissemination state (eager push on a tree, lazy IHAVE elsewhere, GRAFT/PRUNE repair).

Peers are known by key. A new peer starts eager until our tree formed, lazy afterwards (unless
we have no eager peer). A duplicate EVENT PRUNEs its sender (one-way: it stops pushing to us, we
keep pushing to it until it PRUNEs us), unless it gave us a first copy within ``prune_protect``;
an IHAVE for an id we lack starts a timer, and when it fires we GRAFT the announcer (making it
eager) so the tree repairs itself. Why each rule: docs/protocol.md ("Dissemination"), measured
with benchmarks/gossip.py.

Two rules for many concurrent sources, off by default (``tree_repair``, ``source_parents``): an
announced event that came by anti-entropy still GRAFTs its announcer when the timer fires (no
push reached us: the tree is cut above us), and losing our latest parent GRAFTs another peer at
once (new links start lazy on both sides: nothing else would push to us); and no PRUNE of a peer
that was the first pusher of one of the last ``source_parents`` sources (our parent towards that
source), so a node keeps a pusher towards every active source instead of about one in all.

No IHAVE goes to a peer that announced the same id to us; ``fetching`` tells anti-entropy which
ids a GRAFT timer or a GRAFT already covers (no WANT for them).

Plumtree's optimisation (off by default): IHAVE carries the announcer's hop count per id; when
lazy peers announce events we got through paths longer by ``optimize_threshold`` hops on average
over ``optimize_samples`` events, we GRAFT the announcer (empty id list: "push to me") and PRUNE
the peer that gave us the long paths.

``mode="flood"`` pushes every event to every active peer instead (the benchmark baseline);
``mode="none"`` disseminates nothing (so anti-entropy can be tested alone).

This class only decides; it returns ``(peer_key, Message)`` pairs for the core to send.
Deterministic: peer sets are insertion-ordered dicts, timers a heap keyed by (time, sequence).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import PlumtreeCounters
from p2pauction.gossip.messages import MAX_HOPS, MAX_IDS, EventMsg, Graft, IHave, Message, Prune

Out = list[tuple[str, Message]]
MAX_ANNOUNCERS = 4
GAIN_CLAMP = 4         # one event's hop gain counts at most this much in the optimisation's mean
MAX_GAIN_PAIRS = 256   # (announcer, eager peer) pairs whose gains are being averaged
MAX_HEARD_FROM = 16   # announcers remembered per id (above max_degree: every lazy peer fits)
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
        # recent id -> peers that announced it to us (they hold it: an IHAVE back is useless)
        self._heard_from: dict[str, dict[str, None]] = {}
        self._grafted: dict[str, float] = {}         # id -> until when its GRAFT answer is expected
        # announced ids that reached us by another route (anti-entropy, catch-up) before any push:
        # when their GRAFT timer fires, the tree still does not reach us and is repaired then
        self._unpushed: dict[str, None] = {}
        # source (author) -> the peer that pushed us its latest event first, for the latest
        # ``source_parents`` sources; _parent_count: how many of them each such peer serves
        self._parent_of: dict[str, str] = {}
        self._parent_count: dict[str, int] = {}
        self._regraft = False        # tree_repair: our latest parent left; GRAFT a new one at once
        self._optimize_after = 0.0
        self._first_from: dict[str, float] = {}      # peer -> when it last gave us a first copy
        self._tree_formed = False                    # a pushed event arrived: our eager links carry the tree
        self._gain: dict[tuple[str, str], tuple[int, int]] = {}  # (lazy, eager) -> (sum, samples)
        self.counters = PlumtreeCounters()

    # --- membership changes -------------------------------------------------------------------

    def add_peer(self, key: str) -> None:
        """A new link starts eager while our tree forms (no push received yet) or while we have
        no eager peer; afterwards it starts lazy: an eager link added to a formed tree closes a
        cycle, whose duplicates PRUNE edges wherever concurrent events meet and can cut the tree
        in two (then GRAFTs, new cycles, new PRUNEs: churn). A lazy link still carries IHAVEs
        and becomes eager when it delivers an event first or is GRAFTed."""
        self.lazy.pop(key, None)
        self.eager.pop(key, None)
        self.pruned.pop(key, None)
        if self._tree_formed and self.eager and self.mode == "plumtree" and self.cfg.lazy_new_links:
            self.lazy[key] = None
        else:
            self.eager[key] = None

    def remove_peer(self, key: str, now: float = 0.0) -> None:
        if self.cfg.tree_repair and self._is_latest_parent(key):
            # Our latest first pusher left: new links start lazy on both sides, so nothing may
            # push to us any more; GRAFT another peer now instead of after an IHAVE and its timer.
            self._regraft = True
            self._flush_at = min(self._flush_at, now)
        self._first_from.pop(key, None)
        for source in [s for s, parent in self._parent_of.items() if parent == key]:
            del self._parent_of[source]
        self._parent_count.pop(key, None)
        for pair in [p for p in self._gain if key in p]:
            del self._gain[pair]
        self.eager.pop(key, None)
        self.lazy.pop(key, None)
        self.pruned.pop(key, None)
        self._queues.pop(key, None)

    def _latest_parent(self) -> str | None:
        """The peer that gave us a first copy most recently (None: none did)."""
        latest = max(self._first_from.items(), key=lambda item: item[1], default=None)
        return latest[0] if latest is not None else None

    def _is_latest_parent(self, key: str) -> bool:
        return self.mode == "plumtree" and self._latest_parent() == key

    def _connected(self, key: str) -> bool:
        return key in self.eager or key in self.lazy

    def _regraft_target(self) -> str | None:
        """The peer that gave us a first copy most recently, else the first lazy peer."""
        recent = self._latest_parent()
        if recent is not None and self._connected(recent):
            return recent
        return next(iter(self.lazy), next(iter(self.eager), None))

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

    def fetching(self, event_id: str, now: float) -> bool:
        """Whether Plumtree already gets this id: announced to us (its GRAFT timer runs) or
        GRAFTed and the answer not yet overdue. Anti-entropy need not WANT it as well."""
        return event_id in self._missing or self._grafted.get(event_id, -1.0) > now

    def _heard(self, sender: str, event_id: str) -> None:
        peers = self._heard_from.get(event_id)
        if peers is None:
            peers = self._heard_from[event_id] = {}
            if len(self._heard_from) > self.cfg.hops_memory:
                del self._heard_from[next(iter(self._heard_from))]
        if len(peers) < MAX_HEARD_FROM:
            peers[sender] = None

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
            self.counters.ihave_dropped += 1
            return
        q.append((event_id, hops))
        if self._flush_at == float("inf"):
            self._flush_at = now + self.cfg.ihave_interval

    def _note_parent(self, source: str, sender: str) -> None:
        old = self._parent_of.pop(source, None)
        if old is not None:
            self._release_parent(old)
        self._parent_of[source] = sender
        self._parent_count[sender] = self._parent_count.get(sender, 0) + 1
        if len(self._parent_of) > self.cfg.source_parents:
            oldest = next(iter(self._parent_of))
            self._release_parent(self._parent_of.pop(oldest))

    def _release_parent(self, peer: str) -> None:
        left = self._parent_count.get(peer, 0) - 1
        if left > 0:
            self._parent_count[peer] = left
        else:
            self._parent_count.pop(peer, None)

    def on_new_event(self, event_id: str, sender: str | None, now: float = 0.0, source: str | None = None) -> None:
        """First copy of an event arrived: pushed by ``sender`` (it is on our tree), or by another
        route (``sender`` None). An announced event that only another route brought keeps its
        GRAFT timer: no push reached us, so the tree is cut above us and anti-entropy alone would
        go on feeding this node, an event late each time, without the tree ever being repaired."""
        if sender is None and self.cfg.tree_repair and event_id in self._missing and self.mode == "plumtree":
            self._unpushed[event_id] = None
        else:
            self._missing.pop(event_id, None)
        if sender is not None and self.mode == "plumtree":
            self._make_eager(sender)
            self.pruned.pop(sender, None)
            self._tree_formed = True
            self._first_from[sender] = now
            if source is not None and self.cfg.source_parents:
                self._note_parent(source, sender)

    def on_duplicate(self, sender: str, now: float = 0.0) -> Out:
        """A duplicate EVENT: PRUNE its sender (it stops pushing to us) unless it is a recent
        parent of ours. One-way (``prune_one_way``): we keep pushing to it until it PRUNEs us,
        so each side cuts only the pushes it receives and a link still needed one way stays."""
        if self.mode != "plumtree" or sender in self.pruned:
            return []  # PRUNEd already: its copies in flight need no second PRUNE
        if (now - self._first_from.get(sender, float("-inf")) < self.cfg.prune_protect
                or sender in self._parent_count):
            # It gave us the first copy of a recent event: it is our parent for some source.
            # Concurrent events each PRUNE every link but their own first sender's; without this
            # the union of their cuts leaves a forest (then GRAFTs, new cycles, new cuts: churn).
            self.counters.prune_protected += 1
            return []
        if not self.cfg.prune_one_way:
            self._make_lazy(sender)
        self.pruned[sender] = None
        self.counters.prune_sent += 1
        return [(sender, Prune())]

    def on_prune(self, sender: str) -> None:
        self.counters.prune_recv += 1
        if self.mode == "plumtree":
            self._make_lazy(sender)

    def on_graft(self, sender: str, ids: tuple[str, ...]) -> list[str]:
        """The sender wants these events and joins our eager set; returns the ids to send."""
        self.counters.graft_recv += 1
        self._make_eager(sender)
        return list(ids)

    def on_ihave(self, sender: str, ids: tuple[str, ...], hs: tuple[int, ...], known: Callable[[str], bool],
                 now: float) -> Out:
        self.counters.ihave_recv += 1
        self.counters.ihave_ids_recv += len(ids)
        out: Out = []
        for n, event_id in enumerate(ids):
            self._heard(sender, event_id)
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
                    self.counters.missing_dropped += 1
                    continue
                self._missing[event_id] = [sender]
                self._push_timer(now + self.cfg.graft_timeout, event_id)
            elif sender not in announcers and len(announcers) < MAX_ANNOUNCERS:
                announcers.append(sender)
        return out

    def _maybe_optimize(self, announcer: str, event_id: str, their_hops: int) -> Out:
        """Plumtree's optimisation, judged over several sources: the hops a lazy announcer saves
        against the eager peer that gave us our copy are averaged over ``optimize_samples``
        events before the tree is re-routed (GRAFT the announcer, PRUNE that peer)."""
        threshold = self.cfg.optimize_threshold
        entry = self._received.get(event_id)
        if threshold <= 0 or entry is None or announcer not in self.lazy or their_hops >= MAX_HOPS:
            return []
        our_hops, source = entry
        if source is None or source == announcer or source not in self.eager or our_hops >= MAX_HOPS:
            return []
        gain = max(-GAIN_CLAMP, min(GAIN_CLAMP, our_hops - their_hops - 1))
        tally = self._gain.pop((announcer, source), (0, 0))
        tally = (tally[0] + gain, tally[1] + 1)
        if tally[1] < self.cfg.optimize_samples:
            self._gain[(announcer, source)] = tally  # re-inserted: the dict stays in LRU order
            if len(self._gain) > MAX_GAIN_PAIRS:
                del self._gain[next(iter(self._gain))]
            return []
        if tally[0] < threshold * tally[1]:
            return []  # window over, not enough gain: start a new one
        for pair in [p for p in self._gain if announcer in p or source in p]:
            del self._gain[pair]
        self.counters.optimized += 1
        self.counters.graft_sent += 1
        self.counters.prune_sent += 1
        self.pruned.pop(announcer, None)
        if not self.cfg.prune_one_way:
            # Two-way: the link to the announcer carries our pushes too, the old one none.
            # One-way, each side keeps deciding only the pushes it receives: the GRAFT makes
            # the announcer push to us, the PRUNE stops the old parent's pushes; ours go on.
            self._make_eager(announcer)
            self._make_lazy(source)
        self.pruned[source] = None
        self._record(event_id, their_hops + 1, announcer)
        return [(announcer, Graft(ids=())), (source, Prune())]

    def _repair_tree(self, announcers: list[str], grafts: dict[str, list[str]]) -> None:
        """GRAFT (no ids: "push to me") the first announcer still connected, unless a GRAFT to
        some peer is already going out in this tick (that one repairs the tree as well)."""
        if grafts:
            return
        for key in announcers:
            if self._connected(key):
                grafts[key] = []
                self.counters.tree_repairs += 1
                return

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
            for key, queued in self._queues.items():
                # An announcement of the same id that came in while ours waited: skip the id.
                q = [(i, h) for i, h in queued if key not in self._heard_from.get(i, ())]
                self.counters.ihave_ids_skipped += len(queued) - len(q)
                for i in range(0, len(q), batch):
                    chunk_ids, chunk_hs = zip(*q[i:i + batch])
                    out.append((key, IHave(ids=chunk_ids, hs=chunk_hs)))
                    self.counters.ihave_sent += 1
                self.counters.ihave_ids_sent += len(q)
            self._queues.clear()
        grafts: dict[str, list[str]] = {}
        if self._regraft:
            self._regraft = False
            target = self._regraft_target()
            if target is not None:
                grafts[target] = []
                self.counters.tree_repairs += 1
        while self._timers and self._timers[0][0] <= now:
            _, _, event_id = heapq.heappop(self._timers)
            announcers = self._missing.get(event_id)
            if announcers is None:
                continue
            if known(event_id):
                del self._missing[event_id]
                if event_id in self._unpushed:
                    del self._unpushed[event_id]
                    self._repair_tree(announcers, grafts)
                continue
            while announcers and not self._connected(announcers[0]):
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
        for event_id in [i for i, until in self._grafted.items() if until <= now]:
            del self._grafted[event_id]
        for key, ids in grafts.items():
            for event_id in ids:
                self._grafted[event_id] = now + self.cfg.graft_retry
            self._make_eager(key)
            self.pruned.pop(key, None)
            for i in range(0, max(len(ids), 1), MAX_IDS):
                out.append((key, Graft(ids=tuple(ids[i:i + MAX_IDS]))))
                self.counters.graft_sent += 1
        return out
