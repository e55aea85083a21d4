"""The control socket protocol, in-process: malformed requests, unknown ops, watch lifecycle."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from p2pauction.api import AuctionNode
from p2pauction.control import _short_path, socket_path
from tests.cli_schema import validate_output

pytestmark = pytest.mark.timeout(60)


async def connect(data_dir: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    with _short_path(socket_path(data_dir)) as addr:
        return await asyncio.open_unix_connection(addr, limit=4 * 2**20)


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> dict[str, Any]:
    writer.write(line)
    await writer.drain()
    async with asyncio.timeout(10):
        return dict(json.loads(await reader.readline()))


def test_malformed_requests_get_errors_and_the_connection_survives(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AuctionNode(tmp_path / "n", network=False) as node:
            mode = stat.S_IMODE(os.stat(socket_path(node.data_dir)).st_mode)
            assert mode == 0o600
            reader, writer = await connect(node.data_dir)
            try:
                bad = await ask(reader, writer, b"this is not json\n")
                assert bad["ok"] is False and bad["error"]["type"] == "ProtocolError"
                assert (await ask(reader, writer, b'[1, 2]\n'))["ok"] is False
                unknown = await ask(reader, writer, b'{"op": "explode"}\n')
                assert "unknown control op" in unknown["error"]["message"]
                missing = await ask(reader, writer, b'{"op": "bid", "args": {}}\n')
                assert missing["ok"] is False and missing["error"]["type"] == "UsageError"
                money = await ask(reader, writer, b'{"op": "open", "args": {"item": "x", "price": "1e3"}}\n')
                assert money["error"]["type"] == "MoneyError" and "1e3" in money["error"]["message"]
                good = await ask(reader, writer, b'{"op": "open", "args": {"item": "x", "price": "3"}}\n')
                assert good["ok"] is True and len(good["result"]["auction_id"]) == 64
                validate_output("open", good["result"])
                missing_auction = await ask(reader, writer, b'{"op": "show", "args": {"auction": "ffff"}}\n')
                assert missing_auction["error"]["type"] == "NotFound"
            finally:
                writer.close()
            assert node.status()["events"] == 1

    asyncio.run(scenario())


def test_watch_streams_then_frees_its_subscription(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AuctionNode(tmp_path / "n", network=False) as node:
            first = await node.open_auction("Before", "1")
            reader, writer = await connect(node.data_dir)
            ack = await ask(reader, writer, b'{"op": "watch", "args": {"from_start": true}}\n')
            assert ack == {"ok": True, "result": {"watching": None}}
            replayed = json.loads(await reader.readline())["notification"]
            validate_output("watch", replayed)
            assert (replayed["auction_id"], replayed["own"]) == (first, True)
            second = await node.open_auction("After", "1")
            async with asyncio.timeout(10):
                live = json.loads(await reader.readline())["notification"]
            validate_output("watch", live)
            assert (live["kind"], live["auction_id"]) == ("auction.open", second)
            assert node.status()["subscribers"] == 1
            writer.close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while node.status()["subscribers"] and loop.time() < deadline:
                await asyncio.sleep(0.05)  # polling interval of a bounded wait
            assert node.status()["subscribers"] == 0

    asyncio.run(scenario())


def test_watch_of_unknown_auction_is_an_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AuctionNode(tmp_path / "n", network=False) as node:
            reader, writer = await connect(node.data_dir)
            reply = await ask(reader, writer, b'{"op": "watch", "args": {"auction": "abcdef"}}\n')
            writer.close()
            assert reply["ok"] is False and reply["error"]["type"] == "NotFound"

    asyncio.run(scenario())


def test_deep_data_directory_beyond_the_unix_socket_path_limit(tmp_path: Path) -> None:
    from p2pauction.control import ControlClient

    deep = tmp_path / ("d" * 60) / ("e" * 60) / "node"
    assert len(str(socket_path(deep))) > 108

    async def scenario() -> None:
        async with AuctionNode(deep, network=False) as node:
            reply = await asyncio.to_thread(ControlClient(deep).call, "open", item="Far", price="2")
            validate_output("open", reply)
            assert node.auction(reply["auction_id"]).item == "Far"

    asyncio.run(scenario())
