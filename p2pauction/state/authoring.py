"""Authoring local events: the auction rules checked with friendly errors, then signing.

A refused action raises RuleViolation with the same reason tag the ledger would use, so the
message a person sees ("bid too low: the minimum is 80.5 USDt") matches what peers would decide.
"""

from __future__ import annotations

from decimal import Decimal

from p2pauction.errors import RuleViolation, UsageError
from p2pauction.state.events import (MAX_DEPS, MAX_ITEM_CHARS, MAX_NAME_CHARS, BidBody, CloseBody,
                                     Event, Kind, OpenBody, sign_event)
from p2pauction.state.identity import Identity
from p2pauction.state.ledger import TICK, AuctionView, Ledger, Status
from p2pauction.state.money import MAX_AMOUNT, format_money, is_currency
from p2pauction.state.validation import RejectReason


def _amount(value: Decimal, currency: str) -> str:
    return f"{format_money(value)} {currency}"


class Author:
    """Builds this node's events against the current ledger state."""

    def __init__(self, identity: Identity, net: str, name: str | None = None) -> None:
        if name is not None and not 1 <= len(name) <= MAX_NAME_CHARS:
            raise UsageError(f"a display name must be 1-{MAX_NAME_CHARS} characters")
        self.identity = identity
        self.net = net
        self.name = name

    def open(self, ledger: Ledger, *, item: str, start_price: Decimal, currency: str = "USDt",
             min_increment: Decimal = Decimal(0), ends_at: int | None = None, wall_ms: int) -> Event:
        if not isinstance(item, str) or not 1 <= len(item) <= MAX_ITEM_CHARS:
            raise UsageError(f"an item name must be 1-{MAX_ITEM_CHARS} characters")
        if not is_currency(currency):
            raise UsageError(f"currency {currency!r} must be 1-10 ASCII letters (e.g. USDt)")
        format_money(start_price)     # MoneyError for negative / out-of-range amounts
        format_money(min_increment)
        if ends_at is not None and ends_at <= wall_ms:
            raise RuleViolation("the end time must be in the future", RejectReason.ENDS_BEFORE_OPEN)
        body = OpenBody(item, currency, start_price, min_increment, ends_at, self.name)
        return sign_event(self.identity, net=self.net, kind=Kind.OPEN, body=body, deps=(),
                          lamport=1, ts=wall_ms)

    def bid(self, ledger: Ledger, auction_id: str, amount: Decimal, *, wall_ms: int) -> Event:
        view = ledger.auction(auction_id)
        format_money(amount)
        if view.seller == self.identity.public_hex:
            raise RuleViolation("you cannot bid on your own auction", RejectReason.SELLER_BID)
        if view.status is not Status.OPEN:
            raise RuleViolation(f"auction {view.item} is {view.status.value}", RejectReason.AUCTION_CLOSED)
        if view.ends_at is not None and wall_ms > view.ends_at:
            raise RuleViolation(f"auction {view.item} has ended", RejectReason.AFTER_END)
        self._check_amount(view, amount)
        deps = self._pick_deps(ledger, view.id)
        lamport = ledger.next_lamport(deps)
        return sign_event(self.identity, net=self.net, kind=Kind.BID,
                          body=BidBody(view.id, amount, self.name), deps=deps, lamport=lamport,
                          ts=wall_ms)

    @staticmethod
    def _check_amount(view: AuctionView, amount: Decimal) -> None:
        lead = view.leading
        if lead is not None and not view.can_be_outbid:
            raise RuleViolation(
                f"no higher bid is possible: the leading bid {_amount(lead.amount, view.currency)} "
                f"is at (or within the increment of) the largest legal amount {format_money(MAX_AMOUNT)}",
                RejectReason.NOT_ABOVE_BEST if amount <= lead.amount else RejectReason.BELOW_INCREMENT)
        if lead is None:
            if amount < view.start_price:
                raise RuleViolation(f"bid too low: the minimum is {_amount(view.start_price, view.currency)}",
                                    RejectReason.BELOW_START)
            return
        if view.min_increment > 0:
            minimum = max(lead.amount + view.min_increment, view.start_price)
            if amount < minimum:
                reason = RejectReason.NOT_ABOVE_BEST if amount <= lead.amount else RejectReason.BELOW_INCREMENT
                raise RuleViolation(f"bid too low: the minimum is {_amount(minimum, view.currency)}", reason)
        elif amount <= lead.amount:
            minimum = lead.amount + TICK
            raise RuleViolation(
                f"bid too low: the minimum is {_amount(minimum, view.currency)} "
                f"(more than the leading {_amount(lead.amount, view.currency)})",
                RejectReason.NOT_ABOVE_BEST)

    def close(self, ledger: Ledger, auction_id: str, *, wall_ms: int) -> Event:
        view = ledger.auction(auction_id)
        if view.seller != self.identity.public_hex:
            raise RuleViolation("only the seller can close this auction", RejectReason.NOT_SELLER)
        if view.status is not Status.OPEN:
            raise RuleViolation(f"auction {view.item} is already {view.status.value}",
                                RejectReason.AUCTION_CLOSED)
        deps = self._pick_deps(ledger, view.id)
        lamport = ledger.next_lamport(deps)
        winner = view.leading.id if view.leading is not None else None
        return sign_event(self.identity, net=self.net, kind=Kind.CLOSE,
                          body=CloseBody(view.id, winner), deps=deps, lamport=lamport, ts=wall_ms)

    @staticmethod
    def _pick_deps(ledger: Ledger, auction_id: str) -> tuple[str, ...]:
        """The heads; over 32, the newest 32 but always one holding the leading bid in its past,
        so the best bid in the new event's past is the leading bid."""
        heads = ledger.heads(auction_id)
        if len(heads) <= MAX_DEPS:
            return heads
        ranked = sorted(ledger.head_lamports(auction_id), key=lambda lh: (-lh[0], lh[1]))
        chosen = [h for _, h in ranked[:MAX_DEPS]]
        lead = ledger.leading_head(auction_id)
        if lead is not None and lead not in chosen:
            chosen[-1] = lead
        return tuple(sorted(chosen))
