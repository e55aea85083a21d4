"""Node processes over time: SIGKILL and restart (durability, catch-up), auto-close by duration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.procs import Cluster, Proc, cli, ddir, kill, query, start_node, wait_converged, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]



def test_sigkill_after_bid_then_restart_keeps_the_bid_and_catches_up(cluster: Cluster) -> None:
    cluster.bootstrap()
    seller, bidder = cluster.node("S"), cluster.node("B")
    s, b = ddir(seller), ddir(bidder)
    wait_until(lambda: query(b, "status")["peers"] >= 1, 30, "B to connect")
    auction = cli(s, "open", "Pic#1", "75").data["auction_id"]
    wait_converged([s, b], events=1)

    bid = cli(b, "bid", auction[:8], "80").data["bid_id"]
    kill(bidder)                              # right after `bid` returned: no clean shutdown

    # While B is down: a new auction and a close it misses.
    other = cli(s, "open", "Pic#2", "10").data["auction_id"]
    # No --bootstrap: the store remembers its peers. No --name: remembered too.
    restarted = start_node(b, bootstraps=[], net=cluster.net)
    cluster.procs.append(restarted)
    assert restarted.info["name"] == "B"

    # The bid survived kill -9: it is in B's store before B heard from anyone.
    view = query(b, "show", auction=auction)
    assert bid in {x["id"] for x in view["bids"]}

    # B catches up (Pic#2), the seller gets the bid, and the close agrees everywhere.
    wait_until(lambda: other in {v["id"] for v in query(b, "auctions", status="all")}, 30, "B to catch up")
    wait_converged([s, b], events=3)
    result = cli(s, "close", auction).data
    assert (result["buyer_name"], result["price"], result["bid_id"]) == ("B", "80", bid)
    wait_converged([s, b], events=4)
    assert query(b, "show", auction=auction)["winner"]["id"] == bid


def test_duration_auction_is_closed_by_the_sellers_node(cluster: Cluster) -> None:
    cluster.bootstrap()
    nodes = [cluster.node(name) for name in ("S", "B", "C")]
    dirs = [ddir(n) for n in nodes]
    wait_until(lambda: all(query(d, "status")["peers"] >= 2 for d in dirs), 30, "the nodes to connect")
    auction = cli(dirs[0], "open", "Quick", "5", "--duration", "2").data["auction_id"]
    wait_until(lambda: all(auction in {v["id"] for v in query(d, "auctions")} for d in dirs), 20,
               "every node to see the auction")
    placed = cli(dirs[1], "bid", auction[:8], "6", check=False)   # may be too late on a slow machine

    # Nobody runs `close`: the seller's node does it when the time is up.
    def closed_everywhere() -> list[dict[str, Any]] | None:
        views = [query(d, "show", auction=auction) for d in dirs]
        return views if all(v["status"] == "closed" for v in views) else None

    views = wait_until(closed_everywhere, 30, "every node to see the auction closed")
    wait_converged(dirs)
    assert len({str(v["closes"]) for v in views}) == 1
    assert len({str(v["winner"]) for v in views}) == 1
    if placed.ok:
        assert views[0]["winner"]["name"] == "B" and views[0]["price"] == "6"
    else:
        assert "ended" in placed.stderr or "closed" in placed.stderr
        assert views[0]["winner"] is None
    assert query(dirs[0], "status")["node"]["auto_closed"] == 1
    late = cli(dirs[2], "bid", auction[:8], "100", check=False)
    assert late.returncode != 0 and ("ended" in late.stderr or "closed" in late.stderr)
