"""Serving what peers ask for (WANT, WANTA, big GRAFTs, anti-entropy plans), paced per link.

Requested events queue on their link in store (causal) order and leave in EVENTS frames bounded
by count and bytes, as fast as the link's byte pace allows (``serve_pace_bytes``), while the
driver does not hold too much unsent for it (``serve_backlog_max``, at most
``serve_backlog_patience``); the rest waits for the next serve tick. How many events one peer
may ask for is budgeted too (``serve_rate``): a request over it is halved until it fits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import CoreCounters
from p2pauction.gossip.limits import TokenBucket
from p2pauction.gossip.link import Link
from p2pauction.gossip.messages import MAX_EVENTS, Events, Message


class ServeHost(Protocol):
    """What the serving machine asks of the core."""

    def send(self, link: Link, msg: Message) -> None: ...

    def get_raw(self, event_id: str) -> bytes | None: ...

    def in_store_order(self, ids: Iterable[str]) -> list[str]:
        """The accepted ones among ``ids``, in the order they were stored (a causal order)."""
        ...

    def unsent_bytes(self, conn: int) -> int | None:
        """What the driver holds unsent for a connection; None when the driver does not say."""
        ...


class Server:
    def __init__(self, config: GossipConfig, host: ServeHost, counters: CoreCounters) -> None:
        self.cfg = config
        self.host = host
        self.ev = counters
        self._serving: dict[int, Link] = {}     # links with events waiting to be served
        self._next_serve = float("inf")

    def next_deadline(self) -> float:
        return self._next_serve

    def forget(self, link: Link) -> None:
        """The link closed: nothing more is served on it."""
        self._serving.pop(link.conn, None)

    def allowance(self, link: Link, wanted: int, now: float) -> int:
        """How many of ``wanted`` events this peer may be served now (its ``serve_rate`` budget)."""
        bucket = link.serve_budget
        if bucket is None:
            bucket = link.serve_budget = TokenBucket(self.cfg.serve_rate, self.cfg.serve_burst, now)
        n = wanted
        while n > 0 and not bucket.take(n, now):
            n //= 2
        if n < wanted:
            self.ev.serve_throttled += wanted - n
        return n

    def backlogged(self, link: Link, now: float) -> bool:
        """The driver still holds much unsent for this peer: wait rather than overflow it, for
        ``serve_backlog_patience`` at most (then the transport's slow-peer rule decides)."""
        unsent = self.host.unsent_bytes(link.conn)
        if unsent is None or unsent <= self.cfg.serve_backlog_max:
            link.backlogged_since = None
            return False
        if link.backlogged_since is None:
            link.backlogged_since = now
        return now - link.backlogged_since < self.cfg.serve_backlog_patience

    def serve(self, link: Link, ids: list[str], now: float) -> None:
        """Queue events for ``link`` in store (causal) order; they leave paced (_drain)."""
        ordered = self.host.in_store_order(dict.fromkeys(ids))[:self.cfg.ae_serve_max]
        queue = link.serve_queue
        room = self.cfg.serve_queue_max - len(queue)
        allowed = ordered[:self.allowance(link, len(ordered), now)]
        if len(allowed) > room:
            self.ev.serve_dropped += len(allowed) - room  # the asker asks again later
        for event_id in allowed[:max(0, room)]:
            queue[event_id] = None
        self.ev.serve_queued += min(len(allowed), max(0, room))
        self._drain(link, now)

    def tick(self, now: float) -> None:
        if now >= self._next_serve:
            self._next_serve = float("inf")
            for link in list(self._serving.values()):
                self._drain(link, now)

    def _drain(self, link: Link, now: float) -> None:
        """Send what the byte pace allows of the link's queue, in frames bounded by count and
        bytes; the rest waits for the next serve tick."""
        queue = link.serve_queue
        bucket = link.serve_pace
        if bucket is None:
            bucket = link.serve_pace = TokenBucket(self.cfg.serve_pace_bytes, self.cfg.serve_pace_burst, now)
        batch: list[str] = []
        size = 0
        while queue and not link.closed and not self.backlogged(link, now):
            event_id = next(iter(queue))
            raw = self.host.get_raw(event_id)
            if raw is not None and not bucket.take(len(raw), now):
                break
            del queue[event_id]
            if raw is None:
                continue
            if batch and (len(batch) >= MAX_EVENTS or size + len(raw) > self.cfg.events_chunk_bytes):
                self.host.send(link, Events(es=tuple(batch)))
                batch, size = [], 0
            batch.append(raw.decode("utf-8"))
            size += len(raw) + len(raw) // 4  # JSON escaping of quotes inflates the text a little
            self.ev.ae_events_served += 1
        if batch:
            self.host.send(link, Events(es=tuple(batch)))
        if queue and not link.closed:
            self._serving[link.conn] = link
            self._next_serve = min(self._next_serve, now + self.cfg.serve_tick)
        else:
            self._serving.pop(link.conn, None)
