"""Workloads: who authors which auction events when.

Every action goes through the acting node's own ``Author`` (the local rules, then signing) over
its own replica's ledger, with ``wall_ms`` = virtual time + the node's clock skew, then through
its core's ``publish``. So an action may be refused locally (the node has not heard of the
auction yet, or its bid became too low): that is counted, as a real user would see an error.

- ``reference``: the spec's six steps on three nodes C1, C2, C3; every node must end with
  ``Pic#1`` CLOSED, won by C2 at 80.
- ``random``: auctions opened by random sellers, many concurrent bidders, closes by the sellers
  (some auctions with ``ends_at``, closed at that time by their seller's node).
- ``hot``: one auction that thousands of bids hit within about a second, then its close.
- ``chain`` / ``chain-burst``: one auction whose bids form a single chain (each bid depends on
  the previous one), placed one by one over the window or all at once; in the middle of it a
  brand-new node joins and a node that was down since the start returns. Both must catch up the
  whole chain (dependency-aware catch-up, docs/protocol.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulations.context import RunContext
    from simulations.process import SimNode

STEPS = (Decimal("0.5"), Decimal("1"), Decimal("2.5"), Decimal("5"), Decimal("10"))


def next_amount(ledger: Any, aid: str, rng: random.Random) -> Decimal:
    """A bid the node's own view says is valid: at least the minimum, plus a random step."""
    view = ledger.auction(aid)
    step = rng.choice(STEPS)
    if view.leading is None:
        return Decimal(view.start_price) + step - STEPS[0]
    return Decimal(view.min_next_bid) + step


@dataclass
class Workload:
    name: str = "base"
    duration: float = 30.0

    def schedule(self, sim: RunContext, t0: float) -> None:
        raise NotImplementedError

    def final_check(self, sim: RunContext) -> None:
        """Scenario-specific expectations on the final state (violations go to the checker)."""


@dataclass
class Reference(Workload):
    """The spec's reference scenario; nodes C1, C2, C3 are the first three honest nodes."""

    name: str = "reference"
    duration: float = 30.0
    gap: float = 1.0

    def schedule(self, sim: RunContext, t0: float) -> None:
        self.ids: dict[str, str] = {}
        c1, c2, c3 = sim.honest[0], sim.honest[1], sim.honest[2]
        steps: list[tuple[SimNode, str, Callable[[Any, Any, int], Any], tuple[str, ...]]] = [
            (c1, "pic1", lambda a, l, w: a.open(l, item="Pic#1", start_price=Decimal("75"), wall_ms=w), ()),
            (c2, "pic2", lambda a, l, w: a.open(l, item="Pic#2", start_price=Decimal("60"), wall_ms=w), ()),
            (c2, "b75", lambda a, l, w: a.bid(l, self.ids["pic1"], Decimal("75"), wall_ms=w), ("pic1",)),
            (c3, "b755", lambda a, l, w: a.bid(l, self.ids["pic1"], Decimal("75.5"), wall_ms=w), ("pic1", "b75")),
            (c2, "b80", lambda a, l, w: a.bid(l, self.ids["pic1"], Decimal("80"), wall_ms=w), ("pic1", "b755")),
            (c1, "close", lambda a, l, w: a.close(l, self.ids["pic1"], wall_ms=w), ("pic1", "b80")),
        ]
        sim.world.sched.at(t0, self._step, sim, steps, 0, 0)

    def _step(self, sim: RunContext, steps: list[Any], i: int, tries: int) -> None:
        if i >= len(steps):
            return
        node, label, make, needs = steps[i]
        w = sim.world
        ready = node.alive and all(k in self.ids and node.replica.ledger.has(self.ids[k]) for k in needs)
        if not ready and tries < 200:
            w.sched.at(w.now + 0.1, self._step, sim, steps, i, tries + 1)
            return
        ev = sim.act(node, make)
        if ev is None:
            sim.checker.violation("reference_step_failed", w.now, f"step {i + 1} ({label}) by {node.name} refused")
            return
        self.ids[label] = ev.id
        w.sched.at(w.now + self.gap, self._step, sim, steps, i + 1, 0)

    def final_check(self, sim: RunContext) -> None:
        if "close" not in self.ids:
            return
        for n in sim.world.honest_live():
            try:
                v = n.replica.ledger.auction(self.ids["pic1"])
            except Exception as exc:
                sim.checker.violation("reference_mismatch", sim.world.now, f"{n.name}: {exc!r}")
                continue
            ok = (str(v.status) == "closed" and v.winner is not None and v.winner.id == self.ids["b80"]
                  and v.price == Decimal("80"))
            if not ok:
                sim.checker.violation("reference_mismatch", sim.world.now,
                                      f"{n.name}: Pic#1 is {v.status}, winner {v.winner}, price {v.price}")


@dataclass
class RandomAuctions(Workload):
    """``events`` actions in total: about one open per ten, one close per open, the rest bids."""

    name: str = "random"
    duration: float = 30.0
    events: int = 200
    ends_at_share: float = 0.2

    def schedule(self, sim: RunContext, t0: float) -> None:
        rng = random.Random(f"{sim.world.seed}/workload")
        honest = sim.honest
        n_auctions = max(1, self.events // 10)
        n_bids = max(0, self.events - 2 * n_auctions)
        sched = sim.world.sched
        plans = []
        for k in range(n_auctions):
            pos = rng.randrange(len(honest))
            opened = t0 + rng.uniform(0.0, self.duration * 0.4)
            life = rng.uniform(self.duration * 0.3, self.duration * 0.6)
            timed = rng.random() < self.ends_at_share
            plans.append((k, pos, opened, opened + life))
            sched.at(opened, self._open, sim, k, honest[pos], life if timed else None)
            sched.at(opened + life, self._close, sim, k, honest[pos])
        for _ in range(n_bids):
            k, pos, opened, closes = plans[rng.randrange(len(plans))]
            if len(honest) < 2:
                break
            b = rng.randrange(len(honest) - 1)
            bidder = honest[b + 1 if b >= pos else b]   # anyone but the seller
            # a few bids race the close on purpose: they become legitimate "late" bids
            at = rng.uniform(opened + 0.5, closes + 0.3)
            sched.at(at, self._bid, sim, k, bidder, rng.random())
        self.auctions: dict[int, str] = {}

    def _open(self, sim: RunContext, k: int, seller: SimNode, life: float | None) -> None:
        ends = None if life is None else seller.wall_ms(sim.world.now) + int(life * 1000)
        price = Decimal(10 + 5 * (k % 20))
        inc = Decimal(k % 3)
        ev = sim.act(seller, lambda a, l, w: a.open(l, item=f"item#{k}", start_price=price,
                                                    min_increment=inc, ends_at=ends, wall_ms=w))
        if ev is not None:
            self.auctions[k] = ev.id
            sim.opened.append(ev.id)

    def _bid(self, sim: RunContext, k: int, bidder: SimNode, r: float) -> None:
        aid = self.auctions.get(k)
        if aid is None:
            sim.world.counters.publish_refused += 1
            return
        rng = random.Random(r)
        sim.act(bidder, lambda a, l, w: a.bid(l, aid, next_amount(l, aid, rng), wall_ms=w))

    def _close(self, sim: RunContext, k: int, seller: SimNode) -> None:
        aid = self.auctions.get(k)
        if aid is not None:
            sim.act(seller, lambda a, l, w: a.close(l, aid, wall_ms=w))


@dataclass
class HotAuction(Workload):
    """One auction, ``events`` bids from random nodes within ``burst`` seconds, then the close."""

    name: str = "hot"
    duration: float = 20.0
    events: int = 2000
    burst: float = 1.0

    def schedule(self, sim: RunContext, t0: float) -> None:
        rng = random.Random(f"{sim.world.seed}/workload")
        honest = sim.honest
        seller = honest[0]
        self.aid: str | None = None
        sched = sim.world.sched
        sched.at(t0, self._open, sim, seller)
        start = t0 + self.duration * 0.25
        for _ in range(self.events):
            bidder = honest[1 + rng.randrange(len(honest) - 1)] if len(honest) > 1 else seller
            sched.at(start + rng.uniform(0.0, self.burst), self._bid, sim, bidder, rng.random())
        sched.at(t0 + self.duration * 0.75, self._close, sim, seller)

    def _open(self, sim: RunContext, seller: SimNode) -> None:
        ev = sim.act(seller, lambda a, l, w: a.open(l, item="hot", start_price=Decimal(100),
                                                    min_increment=Decimal("0.5"), wall_ms=w))
        if ev is not None:
            self.aid = ev.id
            sim.opened.append(ev.id)

    def _bid(self, sim: RunContext, bidder: SimNode, r: float) -> None:
        aid = self.aid
        if aid is None:
            return
        rng = random.Random(r)
        sim.act(bidder, lambda a, l, w: a.bid(l, aid, next_amount(l, aid, rng), wall_ms=w))

    def _close(self, sim: RunContext, seller: SimNode) -> None:
        if self.aid is not None:
            aid = self.aid
            sim.act(seller, lambda a, l, w: a.close(l, aid, wall_ms=w))


@dataclass
class ChainAuction(Workload):
    """One auction, ``events`` bids in one chain by one bidder, gradually or all at once.

    Node 2 (when there are three or more) is down from the start and returns at ``returns_at``
    of the window; a brand-new node joins at ``joins_at``. The bids are all placed by node 1, so
    each depends on the previous one (the author's only head)."""

    name: str = "chain"
    duration: float = 30.0
    events: int = 2000
    burst: bool = False                     # all bids in one instant instead of over the window
    spread: float = 0.5                     # share of the window the gradual bids take
    joins_at: float = 0.3
    returns_at: float = 0.4

    def schedule(self, sim: RunContext, t0: float) -> None:
        honest = sim.honest
        seller, bidder = honest[0], honest[1 % len(honest)]
        self.aid: str | None = None
        self.placed = 0
        w = sim.world
        w.sched.at(t0, self._open, sim, seller)
        start = t0 + 1.0
        if self.burst:
            w.sched.at(start, self._bids, sim, bidder, self.events)
        else:
            gap = self.duration * self.spread / max(1, self.events)
            for i in range(self.events):
                w.sched.at(start + i * gap, self._bids, sim, bidder, 1)
        if len(honest) >= 3:
            returning = honest[2]
            w.sched.at(t0, w.crash, returning)
            w.sched.at(t0 + self.duration * self.returns_at, w.start, returning)
        w.sched.at(t0 + self.duration * self.joins_at, self._join, sim)

    def _open(self, sim: RunContext, seller: SimNode) -> None:
        ev = sim.act(seller, lambda a, l, w: a.open(l, item="chain", start_price=Decimal(1),
                                                    min_increment=Decimal("0.01"), wall_ms=w))
        if ev is not None:
            self.aid = ev.id
            sim.opened.append(ev.id)

    def _bids(self, sim: RunContext, bidder: SimNode, n: int) -> None:
        aid = self.aid
        if aid is None:
            return
        for _ in range(n):
            amount = Decimal(2) + Decimal("0.01") * self.placed
            if sim.act(bidder, lambda a, l, w: self._chained_bid(a, l, aid, amount, w)) is not None:
                self.placed += 1

    @staticmethod
    def _chained_bid(author: Any, ledger: Any, aid: str, amount: Decimal, wall_ms: int) -> Any:
        """What ``Author.bid`` signs (deps = the auction's heads, the lamport that follows),
        without its local checks: those read the auction's view, rebuilt from all its bids on
        every change (issue 11, item 9), which made authoring a 10,000-bid chain quadratic. The
        amounts rise by the increment, so every node's ledger accepts each bid anyway."""
        from p2pauction.state.events import BidBody, Kind, sign_event

        deps = ledger.heads(aid)
        return sign_event(author.identity, net=author.net, kind=Kind.BID, body=BidBody(aid, amount, author.name),
                          deps=deps, lamport=ledger.next_lamport(deps), ts=wall_ms)

    @staticmethod
    def _join(sim: RunContext) -> None:
        w = sim.world
        w.counters.joins += 1
        w.start(w.add_node())

    def final_check(self, sim: RunContext) -> None:
        if self.placed < self.events:
            sim.checker.violation("chain_incomplete", sim.world.now,
                                  f"only {self.placed} of {self.events} chain bids were placed")


def make(name: str, events: int, duration: float | None = None) -> Workload:
    if name == "reference":
        return Reference()
    if name == "random":
        return RandomAuctions(events=events, duration=duration or 30.0)
    if name == "hot":
        return HotAuction(events=events, duration=duration or 20.0)
    if name in ("chain", "chain-burst"):
        return ChainAuction(name=name, events=events, duration=duration or 30.0, burst=name == "chain-burst")
    raise ValueError(f"unknown scenario {name!r}: use reference, random, hot, chain or chain-burst")
