"""Notifications and the feeds that carry them to subscribers and listeners.

Notifications come from a bounded queue per subscriber: a consumer that falls behind loses the
*oldest* notifications, never blocks the node, and is told how many it missed (``missed`` on the
next notification it gets). Memory stays bounded whatever the consumer does.

The node publishes here; the API re-exports the public classes (``p2pauction.api``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, replace

from p2pauction.logs import get_logger
from p2pauction.results import JSONObject, display_name, format_amount
from p2pauction.state.events import BidBody, CloseBody, Event, OpenBody
from p2pauction.state.ledger import AuctionView, Status
from p2pauction.state.money import format_money

__all__ = ["DEFAULT_QUEUE_SIZE", "Feeds", "Listener", "Notification", "Subscription", "wait_event"]

log = get_logger(__name__)

DEFAULT_QUEUE_SIZE = 1024


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it is set.

    ``asyncio.timeout`` rather than ``wait_for``: on 3.11, ``wait_for`` can swallow a cancellation
    that arrives as the event is set, and a loop around it would then never stop.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Notification:
    """One accepted event, the auction as it stands after it, and whether this node authored it.

    Building one costs O(1) whatever the auction's bid count: ``auction`` is the ledger's view,
    whose bid list is only built if someone reads ``auction.bids``; ``to_json()`` carries the
    view's summary (``bid_count``, leading bid, status...), not the bid list.
    """

    event: Event
    auction: AuctionView
    own: bool
    missed: int = 0             # notifications this subscriber lost (queue full) just before this one

    @property
    def kind(self) -> str:
        return str(self.event.kind)

    @property
    def auction_id(self) -> str:
        return self.event.auction_id

    def describe(self) -> str:
        """One line for people, e.g. ``"C2 bids 80 USDt on Pic#1"``."""
        view = self.auction
        body = self.event.body
        if isinstance(body, OpenBody):
            who = display_name(self.event.author, body.name)
            return f"{who} opens {view.item} at {format_amount(view.start_price, view.currency)}"
        if isinstance(body, BidBody):
            who = display_name(self.event.author, body.name)
            late = " (late: after the close)" if view.is_late(self.event.id) else ""
            return f"{who} bids {format_amount(body.amount, view.currency)} on {view.item}{late}"
        seller = display_name(view.seller, view.seller_name)
        if view.status == Status.DISPUTED:
            return f"{seller} closed {view.item} twice: DISPUTED"
        if body.winner is None:
            return f"{seller} closes {view.item}: no bids"
        winner = view.winner
        if winner is not None and winner.id == body.winner:
            return (f"{seller} closes {view.item}: {display_name(winner.bidder, winner.name)} wins at "
                    f"{format_amount(winner.amount, view.currency)}")
        return f"{seller} closes {view.item}: winning bid {body.winner[:8]}"

    def to_json(self) -> JSONObject:
        """A ``watch --json`` line (docs/cli-output.schema.json, ``$defs/notification``).

        Every field is always present (null when it does not apply): ``amount`` is a bid's,
        ``bid_id`` the bid placed (bid.place) or named the winner (auction.close), ``missed``
        the notifications this subscriber lost just before this one (0 normally).
        """
        body = self.event.body
        amount = format_money(body.amount) if isinstance(body, BidBody) else None
        if isinstance(body, CloseBody):
            author_name, bid_id = self.auction.seller_name, body.winner
        else:
            author_name = body.name
            bid_id = self.event.id if isinstance(body, BidBody) else None
        return {
            "kind": self.kind, "event_id": self.event.id, "auction_id": self.auction_id,
            "author": self.event.author, "author_name": author_name, "own": self.own,
            "ts": self.event.ts, "lamport": self.event.lamport, "summary": self.describe(),
            "amount": amount, "bid_id": bid_id, "missed": self.missed,
            "auction": self.auction.summary_json(),   # O(1): no bid list (ask `show` for it)
        }


class Subscription:
    """An async iterator of :class:`Notification` over a bounded queue.

    Iteration ends when the subscription is closed (``close()``, leaving ``async with``, or the
    node stopping). ``missed`` counts every notification dropped because the consumer was slow.
    """

    def __init__(self, auction: str | None, maxsize: int, on_close: Callable[[Subscription], None]) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.auction = auction
        self.missed = 0
        self._pending_missed = 0
        self._queue: collections.deque[Notification] = collections.deque()
        self._maxsize = maxsize
        self._wake = asyncio.Event()
        self._closed = False
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        return self._closed

    def matches(self, note: Notification) -> bool:
        return self.auction is None or note.auction_id == self.auction

    def push(self, note: Notification) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.missed += 1
            self._pending_missed += 1
        self._queue.append(note)
        self._wake.set()

    def get_nowait(self) -> Notification | None:
        if not self._queue:
            return None
        note = self._queue.popleft()
        if self._pending_missed:
            note = replace(note, missed=self._pending_missed)
            self._pending_missed = 0
        return note

    async def get(self, timeout: float | None = None) -> Notification | None:
        """The next notification; None on timeout or when closed and drained."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            note = self.get_nowait()
            if note is not None or self._closed:
                return note
            self._wake.clear()
            wait = 5.0 if deadline is None else max(0.0, min(5.0, deadline - loop.time()))
            if not await wait_event(self._wake, wait) and deadline is not None and loop.time() >= deadline:
                return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Notification:
        note = await self.get()
        if note is None:
            raise StopAsyncIteration
        return note

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Listener:
    """A callback registered with ``add_listener``; call :meth:`remove` to stop it."""

    def __init__(self, callback: Callable[[Notification], None], auction: str | None,
                 on_remove: Callable[[Listener], None]) -> None:
        self.callback = callback
        self.auction = auction
        self._on_remove = on_remove
        self.errors = 0

    def matches(self, note: Notification) -> bool:
        return self.auction is None or note.auction_id == self.auction

    def remove(self) -> None:
        self._on_remove(self)


class Feeds:
    """Fans notifications out to subscriptions and listeners (used by the node)."""

    def __init__(self) -> None:
        self._subs: dict[int, Subscription] = {}
        self._listeners: dict[int, Listener] = {}
        self.delivered = 0

    def subscribe(self, auction: str | None, maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        sub = Subscription(auction, maxsize, self._drop_subscription)
        self._subs[id(sub)] = sub
        return sub

    def add_listener(self, callback: Callable[[Notification], None], auction: str | None) -> Listener:
        listener = Listener(callback, auction, self._drop_listener)
        self._listeners[id(listener)] = listener
        return listener

    def _drop_subscription(self, sub: Subscription) -> None:
        self._subs.pop(id(sub), None)

    def _drop_listener(self, listener: Listener) -> None:
        self._listeners.pop(id(listener), None)

    def publish(self, note: Notification) -> None:
        self.delivered += 1
        for sub in list(self._subs.values()):
            if sub.matches(note):
                sub.push(note)
        for listener in list(self._listeners.values()):
            if listener.matches(note):
                try:
                    listener.callback(note)
                except Exception:  # an application's bug must not stop the node
                    listener.errors += 1
                    log.exception("listener_failed", auction=note.auction_id)

    def close_all(self) -> None:
        for sub in list(self._subs.values()):
            sub.close()
        self._listeners.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subs) + len(self._listeners)
