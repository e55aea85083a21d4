"""One simulated process and the ends of its connections: the state the network and the engine
share, below both of them.

A :class:`SimNode`'s address, identity and store survive crashes; its core and replica do not.
An :class:`Endpoint` is one side of a connection, what the owning node's core sees as ``conn``.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from simulations.clock import INF


class LostFrame:
    """Inbox marker: a frame whose message is lost above the channel (see :mod:`simulations.network`)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Endpoint:
    """One side of a connection: what the receiving node sees as ``conn``."""

    __slots__ = ("cid", "node", "peer", "open", "inbox", "scheduled", "last_arrival", "lat",
                 "made", "rst_sent", "outbound", "frames_sent")

    def __init__(self, cid: int, node: SimNode, lat: float, outbound: bool) -> None:
        self.cid = cid
        self.node = node
        self.peer: Endpoint | None = None
        self.open = True
        # (arrival, data | lost frame | None for FIN), in arrival order: only the peer fills it,
        # and a link's arrivals never go down (the network keeps every link FIFO)
        self.inbox: deque[tuple[float, bytes | LostFrame | None]] = deque()
        self.scheduled = INF
        self.last_arrival = 0.0
        self.lat = lat
        self.made = False
        self.rst_sent = False
        self.outbound = outbound
        self.frames_sent = 0   # the first ones are the handshake (reliable)


class SimNode:
    """One simulated process: its address, identity and store survive crashes; core does not."""

    __slots__ = ("idx", "name", "ip", "addr", "role", "identity", "store", "replica", "core",
                 "alive", "incarnation", "tick_at", "eps", "skew_ms", "rng", "author", "hostile",
                 "ticks_now", "tick_time", "started_at", "left", "extra")

    def __init__(self, idx: int, name: str, role: str, seed: str) -> None:
        self.idx = idx
        self.name = name
        self.role = role  # "node" or "bootstrap"
        self.ip = f"10.{(idx >> 16) & 255}.{(idx >> 8) & 255}.{idx & 255}"
        self.addr = f"{self.ip}:7000"
        self.rng = random.Random(f"{seed}/node/{idx}")
        self.identity: Any = None
        self.store: Any = None
        self.replica: Any = None
        self.core: Any = None
        self.author: Any = None
        self.alive = False
        self.incarnation = 0
        self.tick_at = INF
        self.eps: dict[int, Endpoint] = {}
        self.skew_ms = 0
        self.hostile = False
        self.ticks_now = 0
        self.tick_time = -1.0
        self.started_at = -1.0
        self.left = False       # churned out for good
        self.extra: dict[str, Any] = {}

    def wall_ms(self, now: float) -> int:
        """The node's wall clock: virtual time plus its skew (only for authored ``ts``)."""
        return int(now * 1000) + self.skew_ms
