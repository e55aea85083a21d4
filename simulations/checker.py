"""Safety at every step, liveness after the faults heal.

Safety, checked as each event is accepted by a node (incrementally, so it costs O(1) per
acceptance apart from one validity verdict per distinct event):

- ``invalid_event_accepted``: an honest node accepted an event that is invalid. The verdict comes
  from an *oracle* in this module, written from the spec's validity table independently of the
  ledger (signature with :func:`verify_signature`, net, deps known and of the same auction, exact
  lamport, and the kind rules from ``best(e)`` / ``closed(e)`` computed over the deps), and from
  the list of events the hostile authors made invalid on purpose.
- ``different_winners``: two nodes report CLOSED with different winners for one auction (allowed
  only while the seller equivocated with two closes, and then every node holding both closes
  must say DISPUTED); or a node reports a winner other than the one its close names.
- ``acknowledged_lost``: a restarted node lacks an event it had acknowledged (authored and
  accepted, or delivered to its user as an ``Accepted`` action) before it crashed.
- ``acknowledged_not_stored``: when a node crashes (and at the end of the run), its store lacks
  an event it acknowledged. An event is acknowledged only once its store commit succeeded, so this
  holds under injected storage faults too (a failed commit must leave nothing acknowledged).
- ``core_exception``: a core raised on an input (nothing a remote sends may crash a node).
- ``view_render`` (at the end): a view of some node cannot be rendered by the CLI (human or
  JSON), the control socket or the API (``simulations/views_check.py``).

Liveness: once the faults heal and the workload is over, all live honest nodes must reach one
state digest within ``bound`` seconds of virtual time (stated in the report).

A violation carries the seed, so ``python -m simulations run --seed S ...`` replays it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulations.process import SimNode

OPEN, BID, CLOSE = "auction.open", "bid.place", "auction.close"
MAX_DEPS = 32
MAX_VIOLATIONS_KEPT = 50


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    time: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "time": round(self.time, 6), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the oracle remembers of a valid event: enough to judge events that depend on it."""

    kind: str
    auction: str
    lamport: int
    closed: bool                               # a close is in this event's causal past (or it is one)
    best: tuple[Decimal, int, str] | None      # (amount, lamport, id) of the best bid in its past (incl. itself)
    # auction parameters, carried from the open
    seller: str
    start_price: Decimal
    min_increment: Decimal
    ends_at: int | None


def _better(a: tuple[Decimal, int, str] | None, b: tuple[Decimal, int, str] | None) -> tuple[Decimal, int, str] | None:
    """Bids compare by amount higher, then lamport lower, then id lower."""
    if a is None:
        return b
    if b is None:
        return a
    if a[0] != b[0]:
        return a if a[0] > b[0] else b
    if a[1] != b[1]:
        return a if a[1] < b[1] else b
    return a if a[2] < b[2] else b


class Oracle:
    """Independent validity verdicts, one per distinct event id, memoised."""

    def __init__(self, net: str) -> None:
        self.net = net
        self.facts: dict[str, Facts] = {}
        self.invalid: dict[str, str] = {}          # id -> why
        self.closes: dict[str, list[str]] = {}     # auction -> valid close ids seen

    def judge(self, ev: Any) -> str | None:
        """None if ``ev`` is valid, else the reason. Deps must have been judged before."""
        eid = ev.id
        if eid in self.facts:
            return None
        if eid in self.invalid:
            return self.invalid[eid]
        why = self._judge(ev)
        if why is None:
            return None
        self.invalid[eid] = why
        return why

    def _judge(self, ev: Any) -> str | None:
        from p2pauction.state.identity import verify_signature

        if ev.net != self.net:
            return "wrong net"
        if not verify_signature(ev.author, ev.sig, ev.signing_bytes):
            return "bad signature"
        kind = str(ev.kind)
        deps = tuple(ev.deps)
        if list(deps) != sorted(set(deps)) or len(deps) > MAX_DEPS:
            return "deps not sorted/distinct or too many"
        body = ev.body
        if kind == OPEN:
            if deps:
                return "open with deps"
            if ev.lamport != 1:
                return "open lamport != 1"
            if body.ends_at is not None and body.ends_at <= ev.ts:
                return "ends_at not after ts"
            self.facts[ev.id] = Facts(OPEN, ev.id, 1, False, None, ev.author, body.start_price,
                                      body.min_increment, body.ends_at)
            return None
        if not deps:
            return f"{kind} without deps"
        dep_facts = []
        for d in deps:
            f = self.facts.get(d)
            if f is None:
                return f"dep {d[:12]} unknown or invalid"
            if f.auction != body.auction:
                return f"dep {d[:12]} of another auction"
            dep_facts.append(f)
        if ev.lamport != 1 + max(f.lamport for f in dep_facts):
            return "lamport not 1 + max(deps)"
        closed = any(f.closed for f in dep_facts)
        best = None
        for f in dep_facts:
            best = _better(best, f.best)
        a = dep_facts[0]
        if closed:
            return f"{kind} after a close in its causal past"
        if kind == BID:
            if ev.author == a.seller:
                return "seller bids on own auction"
            amount = body.amount
            if amount < a.start_price:
                return f"bid {amount} below start price {a.start_price}"
            if best is not None and (amount <= best[0] or amount < best[0] + a.min_increment):
                return f"bid {amount} not above best {best[0]} + increment {a.min_increment}"
            if a.ends_at is not None and ev.ts > a.ends_at:
                return "bid after ends_at"
            mine = (amount, ev.lamport, ev.id)
            self.facts[ev.id] = Facts(BID, a.auction, ev.lamport, False, _better(best, mine), a.seller,
                                      a.start_price, a.min_increment, a.ends_at)
            return None
        if kind == CLOSE:
            if ev.author != a.seller:
                return "close by a non-seller"
            want = best[2] if best is not None else None
            if body.winner != want:
                return f"close names winner {str(body.winner)[:12]}, best in its past is {str(want)[:12]}"
            self.facts[ev.id] = Facts(CLOSE, a.auction, ev.lamport, True, best, a.seller,
                                      a.start_price, a.min_increment, a.ends_at)
            self.closes.setdefault(a.auction, []).append(ev.id)
            return None
        return f"unknown kind {kind}"


class Checker:
    """Receives every acceptance, restart and publish from the world; records violations."""

    def __init__(self, net: str, seed: str, *, replay: str = "") -> None:
        self.seed = seed
        self.replay = replay
        self.oracle = Oracle(net)
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {}
        self.planted_invalid: dict[str, str] = {}   # hostile event id -> what was wrong on purpose
        self.equivocating: dict[str, None] = {}     # auctions whose seller signed two closes
        self.acked: dict[int, list[str]] = {}       # node idx -> ids it acknowledged
        self.authored: dict[int, int] = {}
        self.winner: dict[str, str | None] = {}     # auction -> first CLOSED winner reported
        self.restart_checks = 0
        self.checks = 0
        self.deferred: list[tuple[SimNode, str]] = []

    # --- recording ----------------------------------------------------------------------------

    def violation(self, kind: str, time: float, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.violations) < MAX_VIOLATIONS_KEPT:
            self.violations.append(Violation(kind, time, detail))

    @property
    def ok(self) -> bool:
        return not self.counts

    # --- hooks from the world -----------------------------------------------------------------

    def accepted(self, node: SimNode, ev: Any, own: bool, now: float) -> None:
        self.checks += 1
        if node.hostile:
            return
        eid = ev.id
        self.acked.setdefault(node.idx, []).append(eid)
        why = self.oracle.judge(ev)
        if why is not None:
            self.violation("invalid_event_accepted", now, f"{node.name} accepted {eid[:16]} ({ev.kind}): {why}")
            return
        if eid in self.planted_invalid:
            self.violation("invalid_event_accepted", now,
                           f"{node.name} accepted planted invalid {eid[:16]}: {self.planted_invalid[eid]}")
            return
        kind = str(ev.kind)
        if kind == OPEN:
            return
        aid = ev.body.auction
        if kind == CLOSE or aid in self.oracle.closes:
            # the ledger may already hold later events of the same input batch: look at the
            # node's view once all of the batch's acceptances have been judged
            self.deferred.append((node, aid))

    def step_done(self, now: float) -> None:
        """Called by the world after it drained a core's actions."""
        todo, self.deferred = self.deferred, []
        seen: dict[tuple[int, str], None] = {}
        for node, aid in todo:
            if (node.idx, aid) not in seen and node.replica is not None:
                seen[(node.idx, aid)] = None
                self._check_winner(node, aid, now)

    def _check_winner(self, node: SimNode, aid: str, now: float) -> None:
        try:
            view = node.replica.ledger.auction(aid)
        except Exception as exc:  # the node accepted an event of this auction: it must know it
            self.violation("view_error", now, f"{node.name} cannot show auction {aid[:12]}: {exc!r}")
            return
        status = str(view.status)
        closes = self.oracle.closes.get(aid, [])
        if status == "closed":
            w = view.winner.id if view.winner is not None else None
            if len(view.closes) == 1:
                f = self.oracle.facts.get(view.closes[0])
                # a valid close's winner is the best bid in its past (the oracle checked that)
                want = f.best[2] if f is not None and f.best is not None else None
                if f is not None and w != want:
                    self.violation("different_winners", now,
                                   f"{node.name} says winner {str(w)[:12]} but its close names {str(want)[:12]}")
            first = self.winner.setdefault(aid, w)
            if first != w and aid not in self.equivocating and len(closes) < 2:
                self.violation("different_winners", now,
                               f"auction {aid[:12]}: {node.name} says {str(w)[:12]}, another node said {str(first)[:12]}")
        elif status == "disputed":
            if len(closes) < 2:
                self.violation("bogus_dispute", now, f"{node.name} says {aid[:12]} is DISPUTED with <2 valid closes")

    def acknowledged(self, node: SimNode, ev: Any, now: float) -> None:
        self.authored[node.idx] = self.authored.get(node.idx, 0) + 1

    def node_started(self, node: SimNode, now: float) -> None:
        """After a restart the rebuilt replica must hold everything acknowledged before."""
        ids = self.acked.get(node.idx)
        if not ids or node.hostile:
            return
        self.restart_checks += 1
        has = node.replica.ledger.has
        missing = [i for i in ids if not has(i)]
        if missing:
            self.violation("acknowledged_lost", now,
                           f"{node.name} restarted without {len(missing)} acknowledged events, e.g. {missing[0][:16]}")

    def node_crashed(self, node: SimNode, now: float) -> None:
        """What the node acknowledged must be in its store when the process dies."""
        self._check_stored(node, now, "crashed")

    def _check_stored(self, node: SimNode, now: float, when: str) -> None:
        ids = self.acked.get(node.idx)
        if not ids or node.hostile or node.store is None:
            return
        get = node.store.get_raw
        missing = [i for i in ids if get(i) is None]
        if missing:
            self.violation("acknowledged_not_stored", now,
                           f"{node.name} {when} with {len(missing)} acknowledged events not in its store, "
                           f"e.g. {missing[0][:16]}")

    # --- end of run ---------------------------------------------------------------------------

    def final(self, nodes: list[SimNode], now: float, *, compare_views: int = 50) -> dict[str, Any]:
        """Checks on the final state: nothing acknowledged lost; equal views on a sample of nodes."""
        live = [n for n in nodes if n.alive and n.role == "node" and not n.hostile]
        from simulations.views_check import check_nodes

        for problem in check_nodes(live):     # every view of every node renders (CLI, JSON, API)
            self.violation("view_render", now, problem)
        for n in live:
            ids = self.acked.get(n.idx, [])
            has = n.replica.ledger.has
            missing = sum(1 for i in ids if not has(i))
            if missing:
                self.violation("acknowledged_lost", now, f"{n.name} lacks {missing} events it acknowledged")
            self._check_stored(n, now, "ended")
        ref: dict[str, tuple[str, str | None]] | None = None
        disputed = 0
        late = 0
        for n in live[:compare_views]:
            views = {v.id: (str(v.status), v.winner.id if v.winner is not None else None)
                     for v in n.replica.ledger.auctions()}
            for aid, closes in self.oracle.closes.items():
                if len(closes) >= 2 and all(n.replica.ledger.has(c) for c in closes):
                    if views.get(aid, ("?",))[0] != "disputed":
                        self.violation("missed_dispute", now, f"{n.name} holds two closes of {aid[:12]} but not DISPUTED")
            if ref is None:
                ref = views
                disputed = sum(1 for s, _ in views.values() if s == "disputed")
                late = sum(len(v.late_bids) for v in n.replica.ledger.auctions())
            elif views != ref and n.replica.ledger.digest_hex == live[0].replica.ledger.digest_hex:
                self.violation("divergent_state", now, f"{n.name} has the same digest as {live[0].name} but other views")
        return {"auctions": len(ref or {}), "disputed": disputed, "late_bids": late,
                "closed": sum(1 for s, _ in (ref or {}).values() if s == "closed")}

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations_by_kind": dict(sorted(self.counts.items())),
            "violations": [v.to_json() for v in self.violations],
            "events_judged": len(self.oracle.facts) + len(self.oracle.invalid),
            "invalid_seen": len(self.oracle.invalid),
            "planted_invalid": len(self.planted_invalid),
            "equivocating_auctions": len(self.equivocating),
            "acceptances_checked": self.checks,
            "restart_checks": self.restart_checks,
            "acknowledged": sum(len(v) for v in self.acked.values()),
        }
