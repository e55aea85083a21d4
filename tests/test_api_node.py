"""The Python API (AuctionNode) in-process: actions, queries, subscriptions, data directory rules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from p2pauction import errors
from p2pauction.api import AuctionNode, Notification

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def eventually(check: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval of a bounded wait


def offline(path: Path, **kwargs: Any) -> AuctionNode:
    return AuctionNode(path, network=False, control=False, **kwargs)


def test_ambiguous_prefix_error_lists_the_candidates(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with offline(tmp_path / "n") as node:
            ids = {await node.open_auction(f"Item {i}", "1"): f"Item {i}" for i in range(20)}
            by_digit: dict[str, list[str]] = {}
            for auction_id in sorted(ids):
                by_digit.setdefault(auction_id[0], []).append(auction_id)
            digit, shared = max(by_digit.items(), key=lambda kv: (len(kv[1]), kv[0]))
            with pytest.raises(errors.NotFound) as caught:
                node.auction(digit)
            message = str(caught.value)
            assert message.startswith(f"ambiguous prefix {digit}: ")
            for auction_id in shared[:10]:
                assert f"{auction_id[:12]}... {ids[auction_id]}" in message

    run(scenario())


def test_open_close_and_queries_offline(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with offline(tmp_path / "n", name="Solo") as node:
            auction = await node.open_auction("Pic#1", "75", min_increment=Decimal("0.5"))
            view = node.auction(auction[:6])
            assert (view.id, view.item, view.start_price, view.min_increment) == (
                auction, "Pic#1", Decimal(75), Decimal("0.5"))
            assert [v.id for v in node.auctions("open")] == [auction]
            with pytest.raises(errors.RuleViolation):
                await node.place_bid(auction, "80")          # one's own auction
            with pytest.raises(errors.MoneyError):
                await node.place_bid(auction, "7,5")
            with pytest.raises(errors.NotFound):
                node.auction("ffffffff")
            result = await node.close_auction(auction)
            assert result.winner_key is None and result.price is None
            assert "no bids" in result.describe()
            with pytest.raises(errors.RuleViolation):
                await node.close_auction(auction)
            assert [v.id for v in node.auctions("closed")] == [auction]
            assert node.auctions("open") == []
            assert auction in {r["auction_id"] for r in node.history()}
            status = node.status()
            assert status["events"] == 2 and status["name"] == "Solo" and len(status["digest"]) == 64
            with pytest.raises(errors.UsageError):
                node.auctions("weird")

    run(scenario())


def test_subscription_to_one_auction_sees_only_its_events(tmp_path: Path) -> None:
    async def scenario() -> list[Notification]:
        async with offline(tmp_path / "n") as node:
            first = await node.open_auction("A", "1")
            second = await node.open_auction("B", "1")
            feed = node.subscribe(first[:8])
            everything = node.subscribe()
            await node.close_auction(second)
            await node.close_auction(first)
            note = await feed.get(timeout=5)
            assert note is not None
            assert await feed.get(timeout=0.2) is None
            assert [n.auction_id for n in [everything.get_nowait(), everything.get_nowait()] if n] == [second, first]
            return [note]

    notes = run(scenario())
    assert [(n.kind, n.own, str(n.auction.status)) for n in notes] == [("auction.close", True, "closed")]


def test_slow_subscriber_loses_oldest_and_is_told(tmp_path: Path) -> None:
    async def scenario() -> list[Notification]:
        async with offline(tmp_path / "n") as node:
            feed = node.subscribe(maxsize=3)
            ids = [await node.open_auction(f"Lot {i}", "1") for i in range(5)]
            got = [n for n in iter(feed.get_nowait, None)]
            assert feed.missed == 2
            assert [n.auction_id for n in got] == ids[2:]
            return got

    got = run(scenario())
    assert [n.missed for n in got] == [2, 0, 0]


def test_listener_and_iterator_end_when_node_stops(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        seen: list[str] = []
        streamed: list[str] = []
        node = offline(tmp_path / "n")
        async with node:
            listener = node.add_listener(lambda n: seen.append(n.kind))
            feed = node.subscribe()

            async def consume() -> None:
                async for note in feed:
                    streamed.append(note.kind)

            async with asyncio.TaskGroup() as tg:
                tg.create_task(consume())
                auction = await node.open_auction("A", "1")
                listener.remove()
                await node.close_auction(auction)
                await eventually(lambda: len(streamed) == 2, what="the iterator")
                await node.stop()  # ends the iterator: the TaskGroup can exit
        return seen, streamed

    seen, streamed = run(scenario())
    assert seen == ["auction.open"]
    assert streamed == ["auction.open", "auction.close"]


def test_data_dir_in_use_and_restart_keeps_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with offline(tmp_path / "n", name="Keep") as node:
            auction = await node.open_auction("Kept", "3")
            digest = node.status()["digest"]
            with pytest.raises(errors.StoreError, match="in use by another node"):
                async with offline(tmp_path / "n"):
                    pass
        async with offline(tmp_path / "n") as again:
            assert again.auction(auction).item == "Kept"
            assert again.status()["digest"] == digest
            assert again.name == "Keep"      # remembered from the previous run

    run(scenario())


def test_auto_close_is_rescheduled_after_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with offline(tmp_path / "n", auto_close_grace=0.0) as node:
            auction = await node.open_auction("Soon", "1", duration=0.5)
        async with offline(tmp_path / "n", auto_close_grace=0.0) as node:
            feed = node.subscribe()
            note = await feed.get(timeout=10)
            assert note is not None and note.kind == "auction.close" and note.own
            assert str(node.auction(auction).status) == "closed"
            assert node.status()["node"]["auto_closed"] == 1

    run(scenario())


def test_two_embedded_nodes_over_the_network(tmp_path: Path) -> None:
    fast = {"ae_interval": 1.0, "exempt_ips": ("127.0.0.1",)}

    async def scenario() -> None:
        async with AuctionNode(tmp_path / "a", name="A", net="t", gossip=fast, control=False) as a, \
                AuctionNode(tmp_path / "b", name="B", net="t", gossip=fast, control=False,
                            bootstraps=[a.address or ""]) as b:
            await eventually(lambda: b.peers() and a.peers(), what="the link")
            first = await a.open_auction("First", "10", min_increment="1")
            second = await a.open_auction("Second", "10")
            await eventually(lambda: len(b.auctions()) == 2, what="B to see both auctions")
            only_first = b.subscribe(first)
            with pytest.raises(errors.RuleViolation, match="10"):
                await b.place_bid(first, "9")
            await b.place_bid(first, "12")
            await b.place_bid(second, "11")
            with pytest.raises(errors.RuleViolation, match="13"):
                await b.place_bid(first, "12.5")
            with pytest.raises(errors.RuleViolation):
                await b.close_auction(first)      # not the seller
            await eventually(lambda: len(a.auction(first).bids) == 1 and len(a.auction(second).bids) == 1)
            result = await a.close_auction(first)
            assert (result.winner_name, result.price, result.describe()) == ("B", Decimal(12), "B wins First at 12 USDt")
            await a.close_auction(second)
            await eventually(lambda: str(b.auction(second).status) == "closed", what="B to see the close")
            notes = [n for n in iter(only_first.get_nowait, None)]
            assert [(n.kind, n.own) for n in notes] == [("bid.place", True), ("auction.close", False)]
            assert {n.auction_id for n in notes} == {first}
            assert a.status()["digest"] == b.status()["digest"]

    run(scenario())
