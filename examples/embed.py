"""Embedding p2pauction in an asyncio application.

Two nodes in one program: Alice sells a guitar, Bob bids through his own node, Alice closes and
learns the winner at once. Each prints its live feed, marking its own events. The second node
joins through the first one's address (any node can serve as a bootstrap).

    python examples/embed.py [WORKDIR]

Without WORKDIR the data directories go to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from p2pauction.api import AuctionNode, Notification, Subscription


async def next_matching(feed: Subscription, kind: str, auction: str, timeout: float = 30.0) -> Notification:
    """The next notification of ``kind`` for ``auction`` (gossip takes a moment to deliver)."""
    async with asyncio.timeout(timeout):
        async for note in feed:
            if note.kind == kind and note.auction_id == auction:
                return note
    raise RuntimeError("the node stopped")


async def main(workdir: Path) -> str:
    fast = {"ae_interval": 1.0}  # reconcile every second instead of every ten (a demo, not a network)
    async with AuctionNode(workdir / "alice", name="alice", net="example", gossip=fast) as alice, \
            AuctionNode(workdir / "bob", name="bob", net="example", gossip=fast,
                        bootstraps=[alice.address or ""]) as bob:
        # A callback for everything Alice's node sees, and an async iterator on Bob's side.
        alice.add_listener(lambda n: print(f"[alice feed] {n.describe()}{' (own)' if n.own else ''}"))
        bob_feed = bob.subscribe()

        auction = await alice.open_auction("Guitar", "100", min_increment="5")
        await next_matching(bob_feed, "auction.open", auction)

        alice_feed = alice.subscribe(auction)  # only this auction's events
        await bob.place_bid(auction, "110")
        await next_matching(alice_feed, "bid.place", auction)

        result = await alice.close_auction(auction)
        print(f"alice closed: {result.describe()}")
        seen = await next_matching(bob_feed, "auction.close", auction)
        print(f"bob sees: {seen.describe()}")
        view = bob.auction(auction[:8])  # a unique id prefix works everywhere
        return f"{view.winner.name if view.winner else 'nobody'} wins {view.item} at {view.price} {view.currency}"


if __name__ == "__main__":
    from p2pauction.logs import configure

    configure("warning")  # the library logs through structlog; keep this program's stdout clean
    if len(sys.argv) > 1:
        print(asyncio.run(main(Path(sys.argv[1]))))
    else:
        with tempfile.TemporaryDirectory(prefix="p2pauction-example-") as tmp:
            print(asyncio.run(main(Path(tmp))))
