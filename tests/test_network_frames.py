"""Issue 11 against a real node process: frames are capped before the handshake, and a frame begun
must complete within the deadline (slowloris), over real sockets on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pauction.state.identity import Identity
from tests.net_helpers import NodeProc, RawPeer, run_bounded, running

pytestmark = pytest.mark.slow
NET = "frames-test"
FRAME_TIMEOUT = 3.0  # the target's, shortened so the slowloris test stays short


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    node = NodeProc("target", Path(tmp_path_factory.mktemp("frames")), NET, [],
                    [f"frame_timeout={FRAME_TIMEOUT}", "housekeeping_interval=0.5"])
    with running(node):
        yield node


def run(coro: Any, timeout: float = 60.0) -> Any:
    return run_bounded(coro, timeout)


def test_a_big_frame_before_the_handshake_is_refused_from_its_header(target: NodeProc) -> None:
    async def scenario() -> None:
        peer = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.21")
        try:
            peer.send_raw((500_000).to_bytes(4, "big") + b"{")   # legal after the handshake only
            await peer.drain()
            error = await peer.recv_type("error", 10.0)
            assert error is not None and "over the 1024-byte limit" in error["reason"], error
            assert await peer.closed_by_remote(10.0), "the node kept an unauthenticated 500 KB frame open"
        finally:
            await peer.close()
    run(scenario())
    assert target.status()["gossip"]["links"]["malformed"] >= 1


def test_slowloris_after_the_handshake_is_cut_at_the_frame_deadline(target: NodeProc) -> None:
    async def scenario() -> None:
        peer = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.22")
        try:
            assert await peer.handshake(), f"handshake failed ({peer.last_error})"
            peer.send_raw((200).to_bytes(4, "big") + b"{")
            closed = False
            for _ in range(40):  # the attacker's pace: one byte every 0.5 s, 20 s at most
                peer.send_raw(b" ")
                if await peer.closed_by_remote(0.5):
                    closed = True
                    break
            assert closed, "a frame trickling one byte at a time kept the link open"
        finally:
            await peer.close()
    run(scenario())
    assert target.status()["gossip"]["links"]["frame_timeouts"] >= 1
