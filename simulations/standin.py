"""A trivial stand-in node (flooding + full-list anti-entropy over opaque events).

Only for exercising the simulator's own machinery (clock, network, partitions, crash/restart,
determinism) in fast unit tests. It speaks the same driver interface as
``p2pauction.gossip.core.GossipCore`` but is NOT the protocol: the acceptance tests drive the
real core (see :mod:`simulations.nodes`).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from enum import Enum
from typing import Any

from p2pauction.errors import FrameError
from p2pauction.gossip.actions import Accepted, CloseConn, Dial, Send
from p2pauction.gossip.framing import FrameDecoder, encode_frame


@dataclass(frozen=True, slots=True)
class StandinEvent:
    id: str
    raw: bytes

    @classmethod
    def of(cls, raw: bytes) -> StandinEvent:
        return cls(hashlib.sha256(raw).hexdigest(), raw)


class Kind(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    accepted: tuple[StandinEvent, ...]


class StandinLedger:
    def __init__(self) -> None:
        self.events: dict[str, bytes] = {}
        self.digest = 0

    @property
    def digest_hex(self) -> str:
        return f"{self.digest:064x}"

    def has(self, event_id: str) -> bool:
        return event_id in self.events

    def __len__(self) -> int:
        return len(self.events)


class StandinStore:
    def __init__(self) -> None:
        self.raws: list[bytes] = []

    def append(self, events: Any) -> None:
        self.raws.extend(e.raw for e in events)


class StandinReplica:
    def __init__(self, store: StandinStore) -> None:
        self.store = store
        self.ledger = StandinLedger()
        for raw in store.raws:
            self._apply(StandinEvent.of(raw))

    def _apply(self, ev: StandinEvent) -> None:
        self.ledger.events[ev.id] = ev.raw
        self.ledger.digest = (self.ledger.digest + int(ev.id, 16)) % (1 << 256)

    def receive(self, ev: StandinEvent) -> Outcome:
        if ev.id in self.ledger.events:
            return Outcome(Kind.DUPLICATE, ())
        self._apply(ev)
        self.store.append([ev])
        return Outcome(Kind.ACCEPTED, (ev,))


class StandinCore:
    """Dial ``degree`` random known addresses, flood new events, full-list anti-entropy."""

    def __init__(self, addr: str, known: list[str], replica: StandinReplica, rng: random.Random,
                 now: float, degree: int = 4, ae_interval: float = 2.0) -> None:
        self.addr = addr
        self.known = [a for a in known if a != addr]
        self.replica = replica
        self.rng = rng
        self.degree = degree
        self.ae_interval = ae_interval
        self.conns: dict[int, FrameDecoder] = {}
        self.dialing = 0
        self.actions: list[Any] = []
        self.next_tick = now

    # inputs
    def connection_made(self, conn: int, *, outbound: bool, remote_addr: str, now: float) -> None:
        if outbound:
            self.dialing -= 1
        self.conns[conn] = FrameDecoder()

    def connection_lost(self, conn: int, now: float) -> None:
        self.conns.pop(conn, None)

    def dial_failed(self, addr: str, now: float) -> None:
        self.dialing -= 1

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        dec = self.conns.get(conn)
        if dec is None:
            return
        try:
            frames = dec.feed(data)
        except FrameError as exc:
            self.conns.pop(conn)
            self.actions.append(CloseConn(conn, f"bad frame: {exc}"))
            return
        for f in frames:
            if f["t"] == "ev":
                self._receive(bytes.fromhex(f["e"]), conn)
            elif f["t"] == "have":
                theirs = set(f["ids"])
                mine = self.replica.ledger.events
                missing = [mine[i].hex() for i in sorted(mine) if i not in theirs]
                if missing:
                    self.actions.append(Send(conn, encode_frame({"t": "evs", "es": missing})))
                if any(i not in mine for i in f["ids"]):
                    self._have(conn)
            elif f["t"] == "evs":
                for e in f["es"]:
                    self._receive(bytes.fromhex(e), conn)

    def publish(self, ev: StandinEvent, now: float) -> Outcome:
        out = self.replica.receive(ev)
        if out.kind is Kind.ACCEPTED:
            self.actions.append(Accepted(ev, True))  # type: ignore[arg-type]
            self._flood(ev, None)
        return out

    def tick(self, now: float) -> None:
        if now < self.next_tick:
            return
        self.next_tick = now + self.ae_interval
        if len(self.conns) + self.dialing < self.degree and self.known:
            self.dialing += 1
            self.actions.append(Dial(self.rng.choice(self.known)))
        if self.conns:
            self._have(self.rng.choice(sorted(self.conns)))

    # outputs
    def next_deadline(self) -> float:
        return self.next_tick

    def take_actions(self) -> list[Any]:
        out, self.actions = self.actions, []
        return out

    # internals
    def _receive(self, raw: bytes, conn: int) -> None:
        ev = StandinEvent.of(raw)
        if self.replica.receive(ev).kind is Kind.ACCEPTED:
            self.actions.append(Accepted(ev, False))  # type: ignore[arg-type]
            self._flood(ev, conn)

    def _flood(self, ev: StandinEvent, skip: int | None) -> None:
        frame = encode_frame({"t": "ev", "e": ev.raw.hex()})
        for c in sorted(self.conns):
            if c != skip:
                self.actions.append(Send(c, frame))

    def _have(self, conn: int) -> None:
        self.actions.append(Send(conn, encode_frame({"t": "have", "ids": sorted(self.replica.ledger.events)})))


class StandinFactory:
    """Factory for :class:`simulations.engine.World` building stand-in nodes."""

    net = "standin"

    def __init__(self, degree: int = 4) -> None:
        self.degree = degree
        self.world: Any = None

    def setup(self, world: Any) -> None:
        self.world = world

    def new_identity(self, node: Any) -> Any:
        return None

    def new_store(self, node: Any) -> StandinStore:
        return StandinStore()

    def new_replica(self, node: Any) -> StandinReplica:
        return StandinReplica(node.store)

    def new_core(self, node: Any, now: float) -> StandinCore:
        known = [n.addr for n in self.world.nodes if n.role == "node"]
        rng = random.Random(f"{self.world.seed}/core/{node.idx}/{node.incarnation}")
        return StandinCore(node.addr, known, node.replica, rng, now, degree=self.degree)

    def accepted_kind(self, outcome: Any) -> bool:
        return outcome is not None and outcome.kind is Kind.ACCEPTED

    def make_event(self, node: Any, n: int) -> StandinEvent:
        return StandinEvent.of(f"ev/{node.idx}/{n}".encode())
