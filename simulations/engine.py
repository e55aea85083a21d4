"""The world of simulated nodes, over the virtual clock (:mod:`simulations.clock`) and the
network (:mod:`simulations.network`).

Everything happens in one thread, in virtual time. The world owns the nodes (a sans-IO core over a replica and a store each), the network, the
checker and the counters; it drives a core exactly as the asyncio adapter does: input methods with
the current ``now``, then ``take_actions()`` drained in order, and ``tick(now)`` at
``next_deadline()``.

Crash and restart keep only the node's store: the core and replica objects are dropped and
rebuilt from the store, as a real process restarting from its data directory.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from p2pauction.errors import StoreError
from p2pauction.gossip.actions import Accepted, CloseConn, Dial, Send
from simulations.clock import INF, Scheduler
from simulations.network import Network, NetParams
from simulations.process import Endpoint, SimNode

__all__ = ["INF", "Counters", "Factory", "Monitor", "Scheduler", "SimNode", "World"]

_ACC = struct.Struct("<dI")
MAX_TICKS_AT_ONE_TIME = 64  # a core asking for tick(now) again and again at the same now is stalled


class Monitor(Protocol):
    """What the world reports to a safety checker (:class:`simulations.checker.Checker`).

    ``deferred`` holds checks queued during a step; the world calls ``step_done`` after it drained
    a core's actions whenever the list is not empty.
    """

    deferred: list[tuple[SimNode, str]]

    def violation(self, kind: str, time: float, detail: str) -> None: ...
    def accepted(self, node: SimNode, ev: object, own: bool, now: float) -> None: ...
    def step_done(self, now: float) -> None: ...
    def acknowledged(self, node: SimNode, ev: object, now: float) -> None: ...
    def node_started(self, node: SimNode, now: float) -> None: ...
    def node_crashed(self, node: SimNode, now: float) -> None: ...


class Factory(Protocol):
    """Builds the per-node objects; the real one is :mod:`simulations.nodes`."""

    net: str

    def setup(self, world: World) -> None: ...
    def new_identity(self, node: SimNode) -> Any: ...
    def new_store(self, node: SimNode) -> Any: ...
    def new_replica(self, node: SimNode) -> Any: ...
    def new_core(self, node: SimNode, now: float) -> Any: ...
    def accepted_kind(self, outcome: Any) -> bool: ...


@dataclass
class Counters:
    publishes: int = 0
    publish_accepted: int = 0
    publish_refused: int = 0        # the local Author refused (rule violation / unknown auction)
    publish_store_failed: int = 0   # the store failed to commit a local event (nothing changed)
    skipped_dead: int = 0           # workload steps aimed at a node that was down
    accepted: int = 0               # Accepted actions, all nodes
    core_errors: int = 0
    stalls: int = 0
    crashes: int = 0
    restarts: int = 0
    joins: int = 0
    leaves: int = 0
    injected_frames: int = 0
    storage_faults: int = 0         # store commits made to fail (simulations.faults.StorageFaults)
    by_kind: dict[str, int] = field(default_factory=dict)


class World:
    """All nodes, the network, the clock; the single place that calls into cores."""

    def __init__(self, *, seed: int | str, factory: Factory, net_params: NetParams,
                 checker: Monitor | None = None, trace: bool = True) -> None:
        self.seed = str(seed)
        self.sched = Scheduler()
        self.factory = factory
        self.net = Network(self, net_params, random.Random(f"{self.seed}/net"))
        self.rng = random.Random(f"{self.seed}/world")
        self.nodes: list[SimNode] = []
        self.by_addr: dict[str, SimNode] = {}
        self.bootstraps: list[SimNode] = []
        self.checker = checker
        self.counters = Counters()
        self._hash = hashlib.sha256()
        self.trace_enabled = trace
        if trace:
            self.net.trace = self._hash.update
        self.coverage_bucket = 1.0
        self.coverage: list[int] = []   # Accepted actions per coverage bucket of virtual time
        self.hops_max: dict[str, int] = {}  # event id -> largest hop count seen on acceptance
        self.first_seen: dict[str, float] = {}  # event id -> when it was first accepted anywhere
        self.last_seen: dict[str, float] = {}
        self.observers: list[Callable[[SimNode, Any, bool], None]] = []
        self.fault_windows: list[tuple[float, float, str]] = []
        self.retired: dict[str, int] = {}   # event counters of cores dropped by crashes
        self.storage_faults: Any = None      # simulations.faults.StorageFaults when the plan has them
        factory.setup(self)

    # --- clock ------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.sched.now

    def trace_hash(self) -> str:
        return self._hash.hexdigest()

    # --- nodes ------------------------------------------------------------------------------

    def add_node(self, role: str = "node", name: str | None = None) -> SimNode:
        idx = len(self.nodes)
        node = SimNode(idx, name or (f"boot{idx}" if role == "bootstrap" else f"n{idx}"), role, self.seed)
        self.nodes.append(node)
        self.by_addr[node.addr] = node
        node.identity = self.factory.new_identity(node)
        if role == "bootstrap":
            self.bootstraps.append(node)
        else:
            node.store = self.factory.new_store(node)
        return node

    def start(self, node: SimNode) -> None:
        """Start (or restart) the node's process: a new replica from its store and a new core."""
        if node.alive:
            return
        node.alive = True
        node.incarnation += 1
        node.tick_at = INF
        node.started_at = self.now
        if node.role != "bootstrap":
            node.replica = self.factory.new_replica(node)
        node.core = self.factory.new_core(node, self.now)
        if hasattr(node.core, "on_internal_error"):
            # the core survives its own bugs by closing one link; the simulator reports them
            node.core.on_internal_error = lambda detail, node=node: self._internal_error(node, detail)
        if self.checker is not None and node.role != "bootstrap":
            self.checker.node_started(node, self.now)
        self._drain(node)

    def crash(self, node: SimNode) -> None:
        """kill -9: connections reset, core and replica gone, the store stays."""
        if not node.alive:
            return
        node.alive = False
        node.incarnation += 1
        self._retire(node)
        on_crash = getattr(self.factory, "on_crash", None)
        if on_crash is not None:
            on_crash(node)
        self.net.drop_node(node)
        node.core = None
        node.replica = None
        node.tick_at = INF
        self.counters.crashes += 1
        if self.checker is not None and node.role != "bootstrap":
            self.checker.node_crashed(node, self.now)

    def _retire(self, node: SimNode) -> None:
        if node.role != "node" or node.hostile or node.core is None:
            return
        try:
            ev = node.core.stats().get("events", {})
        except Exception:
            return
        for k, v in ev.items():
            if isinstance(v, int) and not isinstance(v, bool):
                self.retired[k] = self.retired.get(k, 0) + v

    # --- driving a core ---------------------------------------------------------------------

    def call(self, node: SimNode, method: str, *args: Any, **kwargs: Any) -> None:
        """Call an input method of the node's core with ``now``, then perform its actions."""
        core = node.core
        if core is None:
            return
        fn = getattr(core, method, None)
        if fn is None:  # e.g. a discovery core without dial_failed
            return
        try:
            fn(*args, now=self.sched.now, **kwargs)
        except Exception as exc:  # a core must never raise on remote input: record it as a bug
            self._core_error(node, method, exc)
        self._drain(node)

    def deliver_data(self, node: SimNode, ep: Endpoint, data: bytes) -> None:
        try:
            node.core.data_received(ep.cid, data, self.sched.now)
        except Exception as exc:
            self._core_error(node, "data_received", exc)
        self._drain(node)

    def _core_error(self, node: SimNode, method: str, exc: Exception) -> None:
        self.counters.core_errors += 1
        if self.checker is not None:
            self.checker.violation("core_exception", self.now,
                                   f"{node.name}.{method} raised {type(exc).__name__}: {exc}")

    def _internal_error(self, node: SimNode, detail: str) -> None:
        self.counters.core_errors += 1
        if self.checker is not None:
            self.checker.violation("core_exception", self.now, f"{node.name}: a handler raised ({detail})")

    def _drain(self, node: SimNode) -> None:
        core = node.core
        if core is None:
            return
        actions = core.take_actions()
        if actions:
            net = self.net
            send = net.send
            for a in actions:
                tp = type(a)
                if tp is Send:
                    send(node, a.conn, a.data)
                elif tp is Accepted:
                    self._accepted(node, a)
                elif tp is Dial:
                    net.dial(node, a.addr)
                elif tp is CloseConn:
                    net.close(node, a.conn, a.reason)
        sched = self.sched
        chk = self.checker
        if chk is not None and chk.deferred:
            chk.step_done(sched.now)
        if node.core is not core:
            return
        d = core.next_deadline()
        if d < node.tick_at:
            if d < sched.now:
                d = sched.now
            node.tick_at = d
            sched.at(d, self._tick, node, node.incarnation, d)

    def _tick(self, node: SimNode, inc: int, d: float) -> None:
        if inc != node.incarnation or d != node.tick_at or node.core is None:
            return
        now = self.sched.now
        if node.tick_time == now:
            node.ticks_now += 1
            if node.ticks_now > MAX_TICKS_AT_ONE_TIME:
                # a core that keeps asking for the present: step it forward and count the stall
                self.counters.stalls += 1
                node.tick_at = now + 0.001
                self.sched.at(now + 0.001, self._tick, node, inc, now + 0.001)
                node.ticks_now = 0
                return
        else:
            node.tick_time = now
            node.ticks_now = 0
        node.tick_at = INF
        try:
            node.core.tick(now)
        except Exception as exc:
            self._core_error(node, "tick", exc)
        self._drain(node)

    # --- events -----------------------------------------------------------------------------

    def _accepted(self, node: SimNode, a: Accepted) -> None:
        ev = a.event
        now = self.sched.now
        self.counters.accepted += 1
        eid = ev.id
        if self.trace_enabled:
            self._hash.update(_ACC.pack(now, node.idx) + eid.encode())
        b = int(now / self.coverage_bucket)
        cov = self.coverage
        if b >= len(cov):
            cov.extend([0] * (b + 1 - len(cov)))
        cov[b] += 1
        hops = a.hops
        if hops > self.hops_max.get(eid, -1):
            self.hops_max[eid] = hops
        if eid not in self.first_seen:
            self.first_seen[eid] = now
        self.last_seen[eid] = now
        if self.checker is not None:
            self.checker.accepted(node, ev, a.own, now)
        for obs in self.observers:
            obs(node, ev, a.own)

    def publish(self, node: SimNode, event: Any) -> Any:
        """A node's user authored ``event``: hand it to the core; ACCEPTED means acknowledged."""
        self.counters.publishes += 1
        try:
            outcome = node.core.publish(event, self.now)
        except StoreError:  # the store failed to commit (an injected fault): the user sees an error
            self.counters.publish_store_failed += 1
            self._drain(node)
            return None
        except Exception as exc:
            self._core_error(node, "publish", exc)
            self._drain(node)
            return None
        accepted = self.factory.accepted_kind(outcome)
        if accepted:
            self.counters.publish_accepted += 1
            if self.checker is not None:
                self.checker.acknowledged(node, event, self.now)
        self._drain(node)
        return outcome

    def inject(self, node: SimNode, data: bytes) -> int:
        """Hostile: write raw bytes on every established connection of ``node`` (bypassing its core)."""
        n = 0
        for cid in sorted(node.eps):
            ep = node.eps[cid]
            if ep.open and ep.made:
                self.net.send(node, cid, data)
                n += 1
        self.counters.injected_frames += n
        return n

    def inject_message(self, node: SimNode, plaintext: bytes) -> int:
        """Hostile: send a message of its own making on every established link of ``node``,
        encrypted with the link's own session (it holds its keys), bypassing its core's rules."""
        n = 0
        core = node.core
        for cid in sorted(node.eps):
            ep = node.eps[cid]
            frame = core.seal_for(cid, plaintext) if core is not None and ep.open and ep.made else None
            if frame is not None:
                self.net.send(node, cid, frame)
                n += 1
        self.counters.injected_frames += n
        return n

    # --- queries ----------------------------------------------------------------------------

    def honest_live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.alive and n.role == "node" and not n.hostile]

    def digests(self) -> dict[str, int]:
        """digest -> how many honest live nodes hold it."""
        out: dict[str, int] = {}
        for n in self.honest_live():
            d = n.replica.ledger.digest_hex
            out[d] = out.get(d, 0) + 1
        return out
