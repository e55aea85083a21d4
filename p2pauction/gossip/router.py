"""The driver-facing face shared by GossipCore and DiscoveryCore: inputs go to the links machine.

A core is a thin router over machines (``link.Links`` for connections; for a node also
``membership.Membership``, ``dissemination.Plumtree`` and anti-entropy). This base holds the
links machine and passes the driver's connection inputs and hooks to it; the cores add their
own inputs (``tick``, ``publish``...) and handle what the links report (``LinkOwner``).
"""

from __future__ import annotations

from collections.abc import Callable

from p2pauction.gossip.actions import Action
from p2pauction.gossip.link import Links, MessageCache
from p2pauction.gossip.messages import Message


class Router:
    """Connection inputs and driver hooks, forwarded to ``self.links``."""

    def __init__(self, links: Links) -> None:
        self.links = links
        self.key = links.key
        # The links machine's scoreboard and counters, under the names stats() and tests know.
        self.scores = links.scores
        self.counters = links.counters
        self.by_type = links.by_type

    # --- driver inputs ----------------------------------------------------------------------------

    def connection_made(self, conn: int, *, outbound: bool, remote_addr: str, now: float) -> None:
        self.links.connection_made(conn, outbound=outbound, remote_addr=remote_addr, now=now)

    def data_received(self, conn: int, data: bytes, now: float) -> None:
        self.links.data_received(conn, data, now)

    def connection_lost(self, conn: int, now: float) -> None:
        self.links.connection_lost(conn, now)

    def discard_frames(self, conn: int, data: bytes, now: float) -> None:
        self.links.discard_frames(conn, data, now)

    def seal_for(self, conn: int, plaintext: bytes) -> bytes | None:
        return self.links.seal_for(conn, plaintext)

    def take_actions(self) -> list[Action]:
        return self.links.take_actions()

    # --- driver hooks (see link.Links) ------------------------------------------------------------

    @property
    def message_cache(self) -> MessageCache | None:
        return self.links.message_cache

    @message_cache.setter
    def message_cache(self, cache: MessageCache | None) -> None:
        self.links.message_cache = cache

    @property
    def on_internal_error(self) -> Callable[[str], None] | None:
        return self.links.on_internal_error

    @on_internal_error.setter
    def on_internal_error(self, report: Callable[[str], None] | None) -> None:
        self.links.on_internal_error = report

    @property
    def send_backlog(self) -> Callable[[int], int] | None:
        return self.links.send_backlog

    @send_backlog.setter
    def send_backlog(self, backlog: Callable[[int], int] | None) -> None:
        self.links.send_backlog = backlog

    @property
    def sent_tap(self) -> Callable[[int, Message], None] | None:
        return self.links.sent_tap

    @sent_tap.setter
    def sent_tap(self, tap: Callable[[int, Message], None] | None) -> None:
        self.links.sent_tap = tap
