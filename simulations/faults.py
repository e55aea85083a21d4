"""Fault schedules: partitions that form and heal, crashes and restarts, churn, clock skew, hostiles.

A :class:`FaultPlan` is plain data (frozen dataclasses of numbers), so it prints, compares,
round-trips through JSON and is what hypothesis generates and shrinks. ``apply`` turns it into
timed callbacks on a :class:`~simulations.engine.World`. Node references are indices into the
honest nodes of the run (taken modulo their count, so a shrunk plan stays meaningful).

Link-level faults (loss, duplication, reordering, latency) live in
:class:`~simulations.network.NetParams`: they hold for the whole run. Partitions and crashes
happen inside the fault window; ``heal_time`` is when the last of them is over.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from simulations.network import Partition

if TYPE_CHECKING:
    from simulations.engine import World
    from simulations.process import SimNode

PARTITION_KINDS = ("symmetric", "asymmetric", "bridge")
# What an injected storage fault says (the texts SQLite gives for SQLITE_FULL and SQLITE_IOERR)
STORAGE_ERRORS = ("database or disk is full", "disk I/O error")
HOSTILE_ACTS = ("forged_sig", "non_owner_close", "low_bid", "late_bid", "double_close", "garbage",
                "extreme_values")


@dataclass(frozen=True)
class PartitionSpec:
    start: float
    end: float
    kind: str = "symmetric"    # symmetric | asymmetric (group 1 hears group 0, not back) | bridge
    fraction: float = 0.5      # share of nodes in group 1
    bridge: float = 0.05       # share of nodes that talk to both sides (bridge kind only)


@dataclass(frozen=True)
class CrashSpec:
    node: int
    at: float
    down_for: float | None = 5.0   # None: never comes back


@dataclass(frozen=True)
class JoinSpec:
    at: float                       # a brand-new node (empty store) joins


@dataclass(frozen=True)
class LeaveSpec:
    node: int
    at: float                       # leaves for good (churn)


@dataclass(frozen=True)
class HostileSpec:
    node: int                       # index among hostile nodes (they are extra nodes)
    at: float
    act: str


@dataclass(frozen=True)
class StorageSpec:
    start: float
    end: float
    rate: float                     # share of an honest node's commits that fail in [start, end)


@dataclass(frozen=True)
class FaultPlan:
    partitions: tuple[PartitionSpec, ...] = ()
    crashes: tuple[CrashSpec, ...] = ()
    joins: tuple[JoinSpec, ...] = ()
    leaves: tuple[LeaveSpec, ...] = ()
    hostile_nodes: int = 0
    hostile: tuple[HostileSpec, ...] = ()
    skew_ms: int = 0                # each node's wall clock is off by uniform(-skew, skew) ms
    storage: tuple[StorageSpec, ...] = ()   # store commits that fail (disk full, I/O error)

    def heal_time(self) -> float:
        """When the last partition heals, the last crashed node is back, the last churn is done."""
        t = 0.0
        for p in self.partitions:
            t = max(t, p.end)
        for c in self.crashes:
            t = max(t, c.at + (c.down_for or 0.0))
        for j in self.joins:
            t = max(t, j.at)
        for lv in self.leaves:
            t = max(t, lv.at)
        for h in self.hostile:
            t = max(t, h.at)
        for st in self.storage:
            t = max(t, st.end)
        return t

    def windows(self) -> list[tuple[float, float, str]]:
        """Fault periods for the report's shading."""
        out = [(p.start, p.end, f"partition:{p.kind}") for p in self.partitions]
        out += [(c.at, c.at + (c.down_for or 0.0), "crash") for c in self.crashes]
        out += [(st.start, st.end, "storage") for st in self.storage]
        return sorted(out)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FaultPlan:
        return cls(
            partitions=tuple(PartitionSpec(**p) for p in d.get("partitions", ())),
            crashes=tuple(CrashSpec(**c) for c in d.get("crashes", ())),
            joins=tuple(JoinSpec(**j) for j in d.get("joins", ())),
            leaves=tuple(LeaveSpec(**x) for x in d.get("leaves", ())),
            hostile_nodes=int(d.get("hostile_nodes", 0)),
            hostile=tuple(HostileSpec(**h) for h in d.get("hostile", ())),
            skew_ms=int(d.get("skew_ms", 0)),
            storage=tuple(StorageSpec(**st) for st in d.get("storage", ())),
        )


@dataclass
class FaultOptions:
    """What ``random_plan`` draws (the CLI's fault flags)."""

    partitions: list[tuple[str, float, float, float]] = field(default_factory=list)  # kind, start, end, fraction
    crash_fraction: float = 0.0
    crash_window: tuple[float, float] = (0.0, 0.0)
    crash_down: tuple[float, float] = (2.0, 15.0)
    churn_joins: int = 0
    churn_leaves: int = 0
    churn_window: tuple[float, float] = (0.0, 0.0)
    hostile_nodes: int = 0
    hostile_acts: int = 0           # hostile actions per hostile node
    hostile_window: tuple[float, float] = (0.0, 0.0)
    skew_ms: int = 0
    storage_faults: float = 0.0     # share of commits that fail inside storage_window
    storage_window: tuple[float, float] = (0.0, 0.0)


def random_plan(rng: random.Random, n_nodes: int, opts: FaultOptions) -> FaultPlan:
    """Draw a concrete plan from the options, deterministically from ``rng``."""
    parts = tuple(PartitionSpec(start=s, end=e, kind=k, fraction=f) for k, s, e, f in opts.partitions)
    n_crash = round(n_nodes * opts.crash_fraction)
    if opts.crash_fraction > 0:
        n_crash = max(1, n_crash)
    lo, hi = opts.crash_window
    crashes = tuple(
        CrashSpec(node=i, at=round(rng.uniform(lo, hi), 3), down_for=round(rng.uniform(*opts.crash_down), 3))
        for i in sorted(rng.sample(range(n_nodes), min(n_crash, n_nodes))))
    clo, chi = opts.churn_window
    joins = tuple(JoinSpec(at=round(rng.uniform(clo, chi), 3)) for _ in range(opts.churn_joins))
    crashed = {c.node for c in crashes}
    leavers = [i for i in range(n_nodes) if i not in crashed]
    leaves = tuple(LeaveSpec(node=i, at=round(rng.uniform(clo, chi), 3))
                   for i in sorted(rng.sample(leavers, min(opts.churn_leaves, len(leavers)))))
    hlo, hhi = opts.hostile_window
    hostile = tuple(
        HostileSpec(node=h, at=round(rng.uniform(hlo, hhi), 3), act=HOSTILE_ACTS[(h + k) % len(HOSTILE_ACTS)])
        for h in range(opts.hostile_nodes) for k in range(opts.hostile_acts))
    storage: tuple[StorageSpec, ...] = ()
    if opts.storage_faults > 0:
        storage = (StorageSpec(opts.storage_window[0], opts.storage_window[1], opts.storage_faults),)
    return FaultPlan(partitions=parts, crashes=crashes, joins=joins, leaves=leaves,
                     hostile_nodes=opts.hostile_nodes, hostile=tuple(sorted(hostile, key=lambda h: (h.at, h.node))),
                     skew_ms=opts.skew_ms, storage=storage)


# --- applying a plan -----------------------------------------------------------------------------

def partition_groups(spec: PartitionSpec, nodes: list[SimNode], rng: random.Random) -> Partition:
    """Assign groups: 1 for a ``fraction`` of the nodes, 2 for bridges, 0 for the rest."""
    idxs = [n.idx for n in nodes]
    rng.shuffle(idxs)
    n1 = max(1, min(len(idxs) - 1, round(len(idxs) * spec.fraction)))
    groups = {i: 1 for i in idxs[:n1]}
    if spec.kind == "bridge":
        nb = max(1, round(len(idxs) * spec.bridge))
        for i in idxs[n1:n1 + nb]:
            groups[i] = 2
        allowed = frozenset({(0, 0), (1, 1), (2, 2), (0, 2), (2, 0), (1, 2), (2, 1)})
    elif spec.kind == "asymmetric":
        allowed = frozenset({(0, 0), (1, 1), (0, 1)})  # 0 -> 1 flows, 1 -> 0 is cut
    elif spec.kind == "symmetric":
        allowed = frozenset({(0, 0), (1, 1)})
    else:
        raise ValueError(f"unknown partition kind {spec.kind!r}; use one of {PARTITION_KINDS}")
    return Partition(groups=groups, allowed=allowed, kind=spec.kind)


def apply(plan: FaultPlan, world: World, honest: list[SimNode]) -> None:
    """Schedule every fault of ``plan`` on ``world``. ``honest`` are the target nodes."""
    rng = random.Random(f"{world.seed}/faults")
    sched = world.sched
    if plan.skew_ms:
        for n in honest:
            n.skew_ms = rng.randint(-plan.skew_ms, plan.skew_ms)
    for spec in plan.partitions:
        everyone = [n for n in world.nodes if n.role == "node"] + world.bootstraps
        part = partition_groups(spec, everyone, random.Random(f"{world.seed}/partition/{spec.start}"))
        sched.at(spec.start, _set_partition, world, part)
        sched.at(spec.end, _heal_partition, world, part)
    if not honest:
        return
    for c in plan.crashes:
        node = honest[c.node % len(honest)]
        sched.at(c.at, _crash, world, node)
        if c.down_for is not None:
            sched.at(c.at + c.down_for, _restart, world, node)
    for j in plan.joins:
        sched.at(j.at, _join, world)
    for lv in plan.leaves:
        sched.at(lv.at, _leave, world, honest[lv.node % len(honest)])
    if plan.storage:
        world.storage_faults = StorageFaults(plan.storage, world)
    world.fault_windows.extend(plan.windows())


class StorageFaults:
    """Decides, commit by commit, whether an honest node's store fails (seeded per node, so a
    plan replays exactly). The simulated store (``simulations.nodes.FaultyStore``) asks it."""

    def __init__(self, specs: tuple[StorageSpec, ...], world: World) -> None:
        self.specs = specs
        self.world = world
        self._rngs: dict[int, random.Random] = {}

    def draw(self, node: SimNode) -> str | None:
        """The error this commit of ``node`` fails with, or None when it succeeds."""
        if node.hostile:
            return None
        now = self.world.now
        rate = max((st.rate for st in self.specs if st.start <= now < st.end), default=0.0)
        if rate <= 0.0:
            return None
        rng = self._rngs.get(node.idx)
        if rng is None:
            rng = self._rngs[node.idx] = random.Random(f"{self.world.seed}/storage/{node.idx}")
        if rng.random() >= rate:
            return None
        self.world.counters.storage_faults += 1
        return rng.choice(STORAGE_ERRORS)


def _set_partition(world: World, part: Partition) -> None:
    world.net.partition = part


def _heal_partition(world: World, part: Partition) -> None:
    if world.net.partition is part:
        world.net.partition = None


def _crash(world: World, node: SimNode) -> None:
    if not node.left:
        world.crash(node)


def _restart(world: World, node: SimNode) -> None:
    if not node.left and not node.alive:
        world.counters.restarts += 1
        world.start(node)


def _join(world: World) -> None:
    node = world.add_node()
    world.counters.joins += 1
    world.start(node)


def _leave(world: World, node: SimNode) -> None:
    if node.left:
        return
    node.left = True
    world.counters.leaves += 1
    if node.alive:
        world.crash(node)
        world.counters.crashes -= 1  # a departure, not a crash
