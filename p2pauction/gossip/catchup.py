"""Catch-up of missing ancestors (WANTA): the machine that asks for exactly what pending events lack.

An event whose deps are unknown is parked in the ledger's pending buffer; this machine notes
which deps it waits for and from whom it came, and every ``fetch_interval`` asks for them with
WANTA (the ids and their ancestors, minus what the asker says it holds). Each id is asked of one
peer at a time; the answer comes as EVENTS, served like any anti-entropy answer. On the serving
side it walks the ancestors of the ids asked for. It decides and returns ``(peer key, message)``
pairs for the core to send, like :class:`~p2pauction.gossip.dissemination.Plumtree`.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from p2pauction.errors import DecodeError
from p2pauction.gossip.antientropy import HeldFilter
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import CoreCounters
from p2pauction.gossip.messages import MAX_ANCESTOR_IDS, MAX_HELD_HEX, WantAncestors
from p2pauction.state.events import decode_event

DEPS_MEMO = 16_384   # event id -> deps, for walking ancestors without decoding each time


class History(Protocol):
    """What the catch-up asks of the node's history (the core answers from its replica)."""

    def known(self, event_id: str) -> bool:
        """Accepted, or parked in the pending buffer."""
        ...

    def accepted(self, event_id: str) -> bool: ...

    def is_pending(self, event_id: str) -> bool: ...

    def get_raw(self, event_id: str) -> bytes | None: ...


@dataclass(slots=True)
class _MissingDep:
    """A dep some pending event waits for: which event, how high in its chain, who sent it."""

    waiter: str
    lamport: int
    sender: str | None


class CatchUp:
    def __init__(self, config: GossipConfig, history: History, rng: random.Random, counters: CoreCounters,
                 now: float) -> None:
        self.cfg = config
        self.history = history
        self.rng = rng
        self.ev = counters
        self._missing_deps: dict[str, _MissingDep] = {}   # insertion order = age
        self._pending_ids: dict[str, None] = {}           # events we hold as pending (WANTA's filter)
        self._fetching: dict[str, float] = {}             # dep id -> when it may be asked again
        self._fetch_req: dict[str, tuple[float, tuple[str, ...]]] = {}  # peer -> (deadline, ids asked)
        self._next_fetch = now
        self._deps_memo: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def catching_up(self, key: str | None) -> bool:
        """Deps are missing, or ``key`` has a WANTA of ours to answer."""
        return bool(self._missing_deps) or key in self._fetch_req

    def peer_gone(self, key: str) -> None:
        self._fetch_req.pop(key, None)

    def next_deadline(self) -> float:
        return self._next_fetch if self._missing_deps else float("inf")

    # --- asking -----------------------------------------------------------------------------------

    def note_pending(self, raw: bytes, sender: str | None) -> None:
        """An event parked for unknown deps: remember which deps to ask for, and from whom."""
        try:
            ev = decode_event(raw)
        except DecodeError:
            return
        self._pending_ids[ev.id] = None
        if len(self._pending_ids) > self.cfg.fetch_track_max:
            del self._pending_ids[next(iter(self._pending_ids))]
        missing = self._missing_deps
        for dep in ev.deps:
            if dep not in missing and not self.history.known(dep):
                missing[dep] = _MissingDep(ev.id, ev.lamport, sender)
        while len(missing) > self.cfg.fetch_track_max:
            self._fetching.pop(next(iter(missing)), None)
            del missing[next(iter(missing))]

    def tick(self, now: float, peers: Iterable[str]) -> list[tuple[str, WantAncestors]]:
        """When due, ask ``peers`` (the active view) for the missing deps of pending events.

        Each id is asked of one peer at a time (no duplicate storm), first of the peer that sent
        the waiting event (it accepted that event, so it holds every ancestor), again of another
        after ``fetch_timeout``. The ids nearest the tip go first: each answer walks a chain back
        ``fetch_ancestors`` events, so a chain of any length is fetched in bounded batches and
        every round makes progress whatever the history's shape."""
        if now < self._next_fetch:
            return []
        cfg = self.cfg
        self._next_fetch = now + cfg.fetch_interval
        peers = list(peers)
        if not self._missing_deps or not peers:
            return []
        todo: list[tuple[int, str]] = []
        for dep, m in list(self._missing_deps.items()):
            if self.history.known(dep) or not self.history.is_pending(m.waiter):
                del self._missing_deps[dep]   # arrived, or its waiter was evicted or rejected
                self._fetching.pop(dep, None)
            elif self._fetching.get(dep, -1.0) <= now:
                todo.append((m.lamport, dep))
        idle = [key for key in peers if self._fetch_idle(key, now)]
        if not todo or not idle:
            return []
        todo.sort(key=lambda t: (-t[0], t[1]))
        for pid in [p for p in self._pending_ids if not self.history.is_pending(p)]:
            del self._pending_ids[pid]
        held = HeldFilter.of(list(self._pending_ids), MAX_HELD_HEX).to_hex()
        chunks = [[dep for _, dep in todo[i:i + MAX_ANCESTOR_IDS]]
                  for i in range(0, min(len(todo), MAX_ANCESTOR_IDS * cfg.fetch_peers), MAX_ANCESTOR_IDS)]
        out: list[tuple[str, WantAncestors]] = []
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
            out.append((key, WantAncestors(ids=ids, held=held)))
        return out

    def _fetch_idle(self, key: str, now: float) -> bool:
        """Whether a peer may be asked: its last WANTA was answered in full or timed out."""
        req = self._fetch_req.get(key)
        if req is None:
            return True
        deadline, ids = req
        if now >= deadline or all(self.history.known(i) for i in ids):
            del self._fetch_req[key]
            return True
        return False

    # --- answering --------------------------------------------------------------------------------

    def on_wanta(self, msg: WantAncestors) -> list[str]:
        """The ids to serve for a peer's WANTA."""
        self.ev.wanta_served += 1
        return self._ancestors(msg.ids, self.cfg.fetch_ancestors, HeldFilter.from_hex(msg.held))

    def _ancestors(self, ids: Iterable[str], limit: int, held: HeldFilter) -> list[str]:
        """The accepted events among ``ids`` and their ancestors, breadth-first back, at most
        ``limit`` (the asker lacks them: they are missing deps of its pending events), stopping
        at the events the asker says it holds."""
        accepted = self.history.accepted
        out = dict.fromkeys(i for i in ids if accepted(i))
        queue = deque(out)
        while queue and len(out) < limit:
            for dep in self._deps_of(queue.popleft()):
                if dep not in out and accepted(dep) and dep not in held:
                    out[dep] = None
                    queue.append(dep)
        return list(out)[:limit]

    def _deps_of(self, event_id: str) -> tuple[str, ...]:
        memo = self._deps_memo
        deps = memo.get(event_id)
        if deps is None:
            raw = self.history.get_raw(event_id)
            deps = decode_event(raw).deps if raw is not None else ()
            memo[event_id] = deps
            if len(memo) > DEPS_MEMO:
                memo.popitem(last=False)
        return deps
