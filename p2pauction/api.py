"""The public Python API: :class:`AuctionNode` and the types it hands to applications.

Typical use (see ``examples/embed.py``)::

    from p2pauction.api import AuctionNode

    async with AuctionNode("./data", name="C1", bootstraps=["127.0.0.1:7000"]) as node:
        auction_id = await node.open_auction("Pic#1", "75")
        async for note in node.subscribe(auction_id):
            print(note.describe(), "(mine)" if note.own else "")

Notifications come from a bounded queue per subscriber: a consumer that falls behind loses the
*oldest* notifications, never blocks the node, and is told how many it missed (``missed`` on the
next notification it gets). Memory stays bounded whatever the consumer does.

Everything here is typed (``mypy --strict`` clean): ``auction()`` returns an :class:`AuctionView`,
``auctions()`` a list of them, ``close_auction()`` a :class:`CloseResult`, ``subscribe()`` a
:class:`Subscription` of :class:`Notification`. Each has ``to_json()``, the shape documented in
``docs/cli-output.schema.json`` (what the command line prints with ``--json``).
"""

from __future__ import annotations

from p2pauction.feeds import DEFAULT_QUEUE_SIZE, Feeds, Listener, Notification, Subscription, wait_event
from p2pauction.node import AuctionNode, GossipSetting, HistoryRow, NodeStatus, PeerInfo, Stats
from p2pauction.results import CloseResult, JSONObject, JSONValue, display_name, format_amount
from p2pauction.state.ledger import AuctionView, BidView, Status

__all__ = ["DEFAULT_QUEUE_SIZE", "AuctionNode", "AuctionView", "BidView", "CloseResult", "Feeds", "GossipSetting", "HistoryRow",
           "JSONObject", "JSONValue", "Listener", "NodeStatus", "Notification", "PeerInfo", "Stats", "Status",
           "Subscription", "display_name", "format_amount", "wait_event"]
