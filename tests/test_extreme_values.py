"""Issue 11, defects 3 and 10: every value the validity rules accept can be shown, summed and
exported, by the CLI (human and --json), the API views, history, stats and watch; a reader never
takes the node down.

The extreme events are written into a store before a real node process starts on it, so every
CLI command runs against exactly what a node would hold after receiving them from a peer.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from p2pauction.state.events import MAX_INT, Event
from p2pauction.state.ledger import Ledger, Status
from p2pauction.state.money import MAX_AMOUNT, format_money
from p2pauction.state.replica import Replica
from p2pauction.state.store import SqliteStore
from p2pauction.timefmt import format_ms
from tests.procs import (Cluster, Proc, Watch, _env, cli, p2pauction_cmd, query, start_node, wait_converged,
                         wait_until)
from tests.state_helpers import NET, accept, author

pytestmark = pytest.mark.timeout(180)

MAX = format_money(MAX_AMOUNT)      # "999999999999999999.99999999"


def extreme_events() -> tuple[list[Event], dict[str, str]]:
    """Legal events at the extremes: times at 2^63-1, bids at the largest amount, two sales at it,
    an open auction whose leading bid cannot be beaten, and one a local node can still bid on."""
    ledger = Ledger(NET)
    c1, c2, c3 = author(1, "C1"), author(2, "C2"), author(3, "C3")
    out: list[Event] = []
    ids: dict[str, str] = {}

    def add(event: Event) -> str:
        out.append(accept(ledger, event))
        return event.id

    # an honest auction that got a bid stamped 2^63-1 and then a bid at the largest amount; sold
    ids["honest"] = add(c1.open(ledger, item="Honest", start_price=Decimal(1), wall_ms=1000))
    add(c2.bid(ledger, ids["honest"], Decimal(100), wall_ms=MAX_INT))
    add(c3.bid(ledger, ids["honest"], MAX_AMOUNT, wall_ms=2000))
    add(c1.close(ledger, ids["honest"], wall_ms=3000))
    # an auction living at the end of time, sold at the largest amount too (two such sales)
    ids["far"] = add(c2.open(ledger, item="Far", start_price=MAX_AMOUNT, ends_at=MAX_INT, wall_ms=MAX_INT - 1))
    add(c3.bid(ledger, ids["far"], MAX_AMOUNT, wall_ms=MAX_INT))
    add(c2.close(ledger, ids["far"], wall_ms=MAX_INT))
    # open, ends at 2^63-1, leading bid at the largest amount: no next bid exists
    ids["maxed"] = add(c1.open(ledger, item="Maxed", start_price=Decimal(1), ends_at=MAX_INT, wall_ms=5000))
    add(c2.bid(ledger, ids["maxed"], MAX_AMOUNT, wall_ms=6000))
    # open, for the local node to bid the largest amount on
    ids["target"] = add(c1.open(ledger, item="Target", start_price=Decimal(1), wall_ms=7000))
    return out, ids


def write_store(data_dir: Path, events: list[Event]) -> None:
    data_dir.mkdir(mode=0o700, parents=True)
    store = SqliteStore(data_dir / "store.db")
    try:
        replica = Replica(NET, store)
        for event in events:
            assert replica.receive(event).kind == "accepted"
    finally:
        store.close()


# --------------------------------------------------------------------------- in-process


def test_format_ms_shows_every_legal_time() -> None:
    assert format_ms(0) == "1970-01-01 00:00:00 UTC"
    assert format_ms(MAX_INT) == f"{MAX_INT} ms (beyond year 9999)"
    assert format_ms(None) == "-"


def test_history_bounds_beyond_event_times_are_usage_errors() -> None:
    from p2pauction.errors import UsageError
    from p2pauction.node import to_ms

    assert to_ms(MAX_INT) == MAX_INT
    for bad in (MAX_INT + 1, float("inf"), float("nan"), True):
        with pytest.raises(UsageError):
            to_ms(bad)


def test_views_of_extreme_events_render_in_json_and_summary() -> None:
    events, ids = extreme_events()
    ledger = Ledger(NET)
    for event in events:
        accept(ledger, event)
    maxed = ledger.auction(ids["maxed"])
    assert maxed.status is Status.OPEN and not maxed.can_be_outbid
    assert maxed.to_json()["min_next_bid"] is None          # was: MoneyError (out of range)
    assert ledger.auction(ids["target"]).to_json()["min_next_bid"] == "1"
    far = ledger.auction(ids["far"]).to_json()
    assert far["closed_ts"] == MAX_INT and far["price"] == MAX
    for view in ledger.auctions():
        assert view.to_json()["bid_count"] == len(view.bids)


def test_stats_sum_two_maximal_sales_exactly() -> None:
    from p2pauction.state.store import compute_stats

    row = {"seller": "s", "seller_name": None, "currency": "USDt", "price": MAX, "winner": "w",
           "winner_name": None, "status": "closed"}
    rows = [{**row, "auction": str(i), "closed_ts": MAX_INT} for i in range(3)]
    stats = compute_stats(rows, [], None, None)
    usdt = stats["currencies"]["USDt"]
    assert usdt["volume"] == "2999999999999999999.99999997"
    assert usdt["average"] == MAX and usdt["max"] == MAX
    # 10^12 maximal sales still sum exactly (beyond the default 28-digit context)
    from p2pauction.state.money import sum_money

    assert sum_money([MAX_AMOUNT] * 1000) == Decimal("999999999999999999999.99999000")


# --------------------------------------------------------------------------- real node


@dataclass
class ExtremeNode:
    proc: Proc
    data_dir: Path
    ids: dict[str, str]
    count: int
    cluster: Cluster


@pytest.fixture(scope="module")
def extreme_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExtremeNode]:
    root = tmp_path_factory.mktemp("extreme")
    events, ids = extreme_events()
    write_store(root / "X1", events)
    with Cluster(root, net=NET) as cluster:
        node = start_node(root / "X1", name="X1", offline=True, net=NET)
        cluster.procs.append(node)
        yield ExtremeNode(node, root / "X1", ids, len(events), cluster)


def test_every_query_renders_extreme_values_on_a_real_node(extreme_node: ExtremeNode) -> None:
    node, ids, d = extreme_node.proc, extreme_node.ids, extreme_node.data_dir
    for json_out in (False, True):
        cli(d, "auctions", "--status", "all", json_out=json_out)
        cli(d, "auctions", json_out=json_out)
        for key in ("honest", "far", "maxed"):
            shown = cli(d, "show", ids[key], json_out=json_out)
            if not json_out:
                assert "Traceback" not in shown.stderr
        cli(d, "history", json_out=json_out)
        cli(d, "history", "--stats", json_out=json_out)
        cli(d, "status", json_out=json_out)
    far = cli(d, "show", ids["far"], json_out=False).stdout
    assert f"{MAX_INT} ms (beyond year 9999)" in far and MAX in far
    stats = cli(d, "history", "--stats").data
    assert stats["currencies"]["USDt"]["volume"] == "1999999999999999999.99999998"
    assert cli(d, "show", ids["maxed"]).data["min_next_bid"] is None
    assert node.alive()


def test_bid_at_the_largest_amount_succeeds_on_a_real_node(extreme_node: ExtremeNode) -> None:
    node, ids, d = extreme_node.proc, extreme_node.ids, extreme_node.data_dir
    human = cli(d, "bid", ids["target"][:12], MAX, json_out=False)
    assert "placed" in human.stdout and "(leading)" in human.stdout
    refused = cli(d, "bid", ids["target"][:12], MAX, check=False, json_out=False)
    assert refused.returncode == 1 and "no higher bid is possible" in refused.stderr
    assert "internal error" not in refused.stderr
    assert node.alive()


def test_watch_from_start_renders_every_extreme_event_and_the_node_survives(extreme_node: ExtremeNode) -> None:
    node, d, count, cluster = extreme_node.proc, extreme_node.data_dir, extreme_node.count, extreme_node.cluster
    watch = cluster.watch(node, None, "--from-start")
    lines = watch.wait_for(count)
    assert {line["ts"] for line in lines} >= {MAX_INT}
    # the human feed too: one line per event, times beyond the calendar shown raw
    human = subprocess.Popen(p2pauction_cmd("watch", "--from-start", "--data-dir", str(d)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             env=_env(), text=True)
    try:
        assert human.stdout is not None
        seen = [human.stdout.readline() for _ in range(count)]
    finally:
        human.kill()
        human.wait(10)
        for stream in (human.stdout, human.stderr):
            if stream is not None:
                stream.close()
    assert all(line.endswith("\n") for line in seen), seen
    assert any("beyond year 9999" in line for line in seen)
    wait_until(lambda: query(d, "ping")["pong"], 10, "the node to answer")
    assert node.alive()
    Watch.stop(watch)


def test_a_network_with_a_maximal_leading_bid_survives_watchers(tmp_path: Path) -> None:
    """Defect 10 as reported: three nodes, a leading bid at the largest amount, then a
    `watch --from-start` on every node: every node stays up and every watch prints both events."""
    with Cluster(tmp_path) as cluster:
        cluster.bootstrap()
        nodes = [cluster.node(name) for name in ("C1", "C2", "C3")]
        dirs = [n.data_dir for n in nodes]
        assert all(d is not None for d in dirs)
        c1, c2, c3 = (d for d in dirs if d is not None)
        wait_until(lambda: all(len(query(d, "peers")) >= 2 for d in (c1, c2, c3)), 30, "the mesh")
        aid = cli(c1, "open", "Pic#1", "75").data["auction_id"]
        wait_until(lambda: query(c2, "status")["events"] == 1, 30, "C2 to see the open")
        cli(c2, "bid", aid[:10], MAX)
        wait_converged([c1, c2, c3], events=2)
        watches = [cluster.watch(n, None, "--from-start") for n in nodes]
        for watch in watches:
            lines = watch.wait_for(2)
            assert lines[1]["amount"] == MAX and lines[1]["auction"]["min_next_bid"] is None
        for node in nodes:
            assert node.alive(), node.log_tail()
        assert cli(c3, "show", aid[:10], json_out=False).stdout.count(MAX) >= 1
