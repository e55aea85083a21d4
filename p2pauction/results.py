"""What the node's actions hand back and how parties and amounts are shown to people.

Kept apart from :mod:`p2pauction.node` and :mod:`p2pauction.feeds` so that both can use it without
importing each other (the product layer's imports run one way: cli -> node/api -> feeds/results ->
state).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from p2pauction.jsontypes import JSONObject, JSONValue
from p2pauction.state.money import format_money

__all__ = ["CloseResult", "JSONObject", "JSONValue", "display_name", "format_amount"]


def display_name(key: str | None, name: str | None) -> str:
    """How a party is shown to people: its claimed name, else the first 8 hex digits of its key."""
    if name:
        return name
    return key[:8] if key else "nobody"


def format_amount(value: Decimal | str | None, currency: str) -> str:
    if value is None:
        return "-"
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

    def to_json(self) -> JSONObject:
        """The ``close`` output's fields (docs/cli-output.schema.json, ``$defs/close``).

        The winning bidder is the ``buyer`` (a key, like ``seller``): ``winner`` is a bid object
        in an auction's JSON, and one name means one thing everywhere.
        """
        return {
            "auction_id": self.auction_id, "item": self.item, "currency": self.currency,
            "close_id": self.close_id, "buyer": self.winner_key, "buyer_name": self.winner_name,
            "price": None if self.price is None else format_money(self.price), "bid_id": self.bid_id,
            "summary": self.describe(),
        }
