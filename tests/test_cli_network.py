"""Acceptance tests with real processes on loopback: the reference scenario through the CLI only,
and the bad-input cases that need two parties."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.procs import Cluster, Proc, cli, ddir, digest, query, read_address, wait_converged, wait_until
from tests.test_cli_local import assert_one_line_error

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NAMES = ("C1", "C2", "C3")



def wait_meshed(nodes: list[Proc], timeout: float = 30.0) -> None:
    def meshed() -> bool:
        return all(query(ddir(n), "status")["peers"] >= len(nodes) - 1 for n in nodes)

    wait_until(meshed, timeout, "the nodes to connect to each other")


def wait_watching(dirs: list[Path], timeout: float = 20.0) -> None:
    wait_until(lambda: all(query(d, "status")["subscribers"] >= 1 for d in dirs), timeout,
               "the watches to attach")


def test_reference_scenario_through_the_cli(cluster: Cluster) -> None:
    cluster.bootstrap()
    nodes = {name: cluster.node(name) for name in NAMES}
    dirs = [ddir(n) for n in nodes.values()]
    wait_meshed(list(nodes.values()))
    watches = {name: cluster.watch(node) for name, node in nodes.items()}
    wait_watching(dirs)

    c1, c2, c3 = (ddir(nodes[n]) for n in NAMES)
    pic1 = cli(c1, "open", "Pic#1", "75", "--currency", "USDt").data["auction_id"]
    wait_converged(dirs, events=1)
    only_pic1 = cluster.watch(nodes["C3"], pic1[:8], "--from-start")   # a per-auction feed
    wait_until(lambda: query(c3, "status")["subscribers"] >= 2, 20, "the per-auction watch to attach")
    cli(c2, "open", "Pic#2", "60", "--currency", "USDt")
    wait_converged(dirs, events=2)
    cli(c2, "bid", pic1[:8], "75")
    wait_converged(dirs, events=3)
    cli(c3, "bid", pic1[:8], "75.5")
    wait_converged(dirs, events=4)
    cli(c2, "bid", pic1[:8], "80")
    wait_converged(dirs, events=5)
    closed = cli(c1, "close", pic1[:8])
    assert closed.data["summary"] == "C2 wins Pic#1 at 80 USDt"
    assert (closed.data["buyer_name"], closed.data["price"]) == ("C2", "80")
    assert cli(c1, "close", pic1[:8], check=False).returncode != 0  # closing twice
    wait_converged(dirs, events=6)

    c2_key = query(c2, "status")["public_key"]
    for name, d in zip(NAMES, dirs):
        view = cli(d, "show", pic1).data
        assert view["status"] == "closed", name
        assert (view["winner"]["name"], view["winner"]["bidder"], view["price"]) == ("C2", c2_key, "80"), name
        assert [b["amount"] for b in view["bids"]] == ["75", "75.5", "80"]
    assert "C2 wins at 80 USDt" in cli(c3, "show", pic1, json_out=False).stdout

    keys = {name: query(d, "status")["public_key"] for name, d in zip(NAMES, dirs)}
    streamed = {name: watch.wait_for(6) for name, watch in watches.items()}
    reference = [(n["kind"], n["event_id"]) for n in streamed["C1"]]
    assert [k for k, _ in reference] == ["auction.open", "auction.open", "bid.place", "bid.place",
                                         "bid.place", "auction.close"]
    for name, lines in streamed.items():
        assert [(n["kind"], n["event_id"]) for n in lines] == reference, name
        assert [n["own"] for n in lines] == [n["author"] == keys[name] for n in lines], name
    assert [n["own"] for n in streamed["C2"]] == [False, True, True, False, True, False]
    pic1_events = [e for k, e in reference if k != "auction.open"]
    assert [n["event_id"] for n in only_pic1.wait_for(5)] == [reference[0][1]] + pic1_events
    assert {n["auction_id"] for n in only_pic1.poll()} == {pic1}


def test_two_party_bad_input(cluster: Cluster) -> None:
    cluster.bootstrap()
    seller, bidder = cluster.node("S"), cluster.node("B")
    s, b = ddir(seller), ddir(bidder)
    wait_meshed([seller, bidder])
    status = cli(s, "status").data
    assert status["listen"] == read_address(s) and not status["listen"].endswith(":0")  # port 0 resolved
    assert [p["key"] for p in cli(s, "peers").data if p.get("role") == "node"] == [cli(b, "status").data["public_key"]]
    auction = cli(s, "open", "Pic#9", "75", "--increment", "0.5").data["auction_id"]
    wait_converged([s, b], events=1)

    before = digest(b)
    assert_one_line_error(cli(b, "bid", auction[:8], "74.9", check=False), "75")
    assert_one_line_error(cli(b, "close", auction[:8], check=False))      # not the seller
    assert digest(b) == before == digest(s)

    cli(b, "bid", auction[:8], "80")
    wait_converged([s, b], events=2)
    before = digest(b)
    assert_one_line_error(cli(b, "bid", auction[:8], "80.4", check=False), "80.5")  # states the minimum
    assert_one_line_error(cli(b, "bid", auction[:8], "1e3", check=False), "1e3")
    assert_one_line_error(cli(s, "bid", auction[:8], "90", check=False), "own")
    assert digest(b) == before == digest(s)

    assert cli(s, "close", auction, json_out=False).stdout.strip() == "B wins Pic#9 at 80 USDt"
    wait_converged([s, b], events=3)
    before = digest(b)
    assert_one_line_error(cli(b, "bid", auction[:8], "100", check=False), "closed")
    assert_one_line_error(cli(s, "close", auction, check=False), "closed")
    assert digest(b) == before == digest(s)
