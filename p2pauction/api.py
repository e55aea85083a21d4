"""The public Python API: :class:`AuctionNode` and the types it hands to applications.

Typical use (see ``examples/embed.py``)::

    from p2pauction.api import AuctionNode

    async with AuctionNode("./data", name="C1", bootstraps=["127.0.0.1:7000"]) as node:
        auction = await node.open_auction("Pic#1", "75")
        async for note in node.subscribe(auction):
            print(note.describe(), "(mine)" if note.own else "")

Notifications come from a bounded queue per subscriber: a consumer that falls behind loses the
*oldest* notifications, never blocks the node, and is told how many it missed (``missed`` on the
next notification it gets). Memory stays bounded whatever the consumer does.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from p2pauction.logs import get_logger

if TYPE_CHECKING:
    from p2pauction.node import AuctionNode
    from p2pauction.state.events import Event
    from p2pauction.state.ledger import AuctionView

__all__ = ["AuctionNode", "CloseResult", "Listener", "Notification", "Subscription", "display_name",
           "format_amount", "wait_event"]

log = get_logger(__name__)

DEFAULT_QUEUE_SIZE = 1024


def __getattr__(name: str) -> Any:
    # AuctionNode lives in p2pauction.node, which imports this module: a lazy re-export avoids
    # the import cycle while keeping ``from p2pauction.api import AuctionNode`` working.
    if name == "AuctionNode":
        from p2pauction.node import AuctionNode

        return AuctionNode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def display_name(key: str | None, name: str | None) -> str:
    """How a party is shown to people: its claimed name, else the first 8 hex digits of its key."""
    if name:
        return name
    return key[:8] if key else "nobody"


def format_amount(value: Decimal | str | None, currency: str) -> str:
    if value is None:
        return "-"
    from p2pauction.state.money import format_money

    text = value if isinstance(value, str) else format_money(value)
    return f"{text} {currency}"


@dataclass(frozen=True, slots=True)
class CloseResult:
    """What ``close_auction`` returns to the seller at once: the winner and the price."""

    auction_id: str
    item: str
    currency: str
    close_id: str
    winner_key: str | None      # the winning bidder's public key (None: no bid)
    winner_name: str | None     # the name the bidder claimed, if any
    price: Decimal | None
    bid_id: str | None

    def describe(self) -> str:
        """``"C2 wins Pic#1 at 80 USDt"``, or ``"Pic#1 closed with no bids"``."""
        if self.winner_key is None:
            return f"{self.item} closed with no bids"
        who = display_name(self.winner_key, self.winner_name)
        return f"{who} wins {self.item} at {format_amount(self.price, self.currency)}"

    def to_json(self) -> dict[str, Any]:
        from p2pauction.state.money import format_money

        return {
            "auction": self.auction_id, "item": self.item, "currency": self.currency,
            "close": self.close_id, "winner": self.winner_key, "winner_name": self.winner_name,
            "price": None if self.price is None else format_money(self.price), "bid": self.bid_id,
            "summary": self.describe(),
        }


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
        body: Any = self.event.body
        who = display_name(self.event.author, getattr(body, "name", None))
        kind = self.kind
        if kind == "auction.open":
            return f"{who} opens {view.item} at {format_amount(view.start_price, view.currency)}"
        if kind == "bid.place":
            late = " (late: after the close)" if view.is_late(self.event.id) else ""
            return f"{who} bids {format_amount(body.amount, view.currency)} on {view.item}{late}"
        seller = display_name(view.seller, view.seller_name)
        if str(view.status) == "disputed":
            return f"{seller} closed {view.item} twice: DISPUTED"
        if body.winner is None:
            return f"{seller} closes {view.item}: no bids"
        winner = view.winner
        if winner is not None and winner.id == body.winner:
            return (f"{seller} closes {view.item}: {display_name(winner.bidder, winner.name)} wins at "
                    f"{format_amount(winner.amount, view.currency)}")
        return f"{seller} closes {view.item}: winning bid {body.winner[:8]}"

    def to_json(self) -> dict[str, Any]:
        body: Any = self.event.body
        out: dict[str, Any] = {
            "kind": self.kind, "event": self.event.id, "auction_id": self.auction_id,
            "author": self.event.author, "name": getattr(body, "name", None) if self.kind != "auction.close"
            else self.auction.seller_name, "own": self.own, "ts": self.event.ts,
            "lamport": self.event.lamport, "summary": self.describe(),
            "auction": self.auction.summary_json(),   # O(1): no bid list (ask `show` for it)
        }
        if self.kind == "bid.place":
            from p2pauction.state.money import format_money

            out["amount"] = format_money(body.amount)
        elif self.kind == "auction.close":
            out["winner_bid"] = body.winner
        if self.missed:
            out["missed"] = self.missed
        return out


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
