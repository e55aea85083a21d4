"""Hostile input against a real node process (issue 4), and after each attack the node still
serves honest peers.

The target is ``python -m p2pauction node`` on 127.0.0.1:0. Honest peers connect from 127.0.0.1
(exempt from per-IP caps and IP bans, as every local test process shares it); each attack comes
from its own 127.0.0.x source address, so it meets every limit a remote host would, and a ban
it earns cannot leak into another test. Memory is the node's VmRSS from /proc; CPU its
utime+stime.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pauction.gossip.secure import LocalIdentity
from p2pauction.state.identity import Identity
from tests.net_helpers import (NodeProc, RawPeer, proc_cpu_seconds, proc_rss_kib, run_bounded, running, until,
                               wait_for)

pytestmark = pytest.mark.slow
NET = "hostile-test"
HANDSHAKE_TIMEOUT = 3.0  # the target's, shortened so the idle-connection test stays short


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    workdir = tmp_path_factory.mktemp("hostile")
    node = NodeProc("target", workdir, NET, [], [f"handshake_timeout={HANDSHAKE_TIMEOUT}", "ae_interval=2"])
    with running(node):
        yield node


def run(coro: Any, timeout: float = 120.0) -> Any:
    return run_bounded(coro, timeout)


async def serves_honest_peer(node: NodeProc) -> None:
    """A fresh honest peer completes the handshake and gets PONG for PING; the control socket answers."""
    peer = await RawPeer(Identity.generate(), NET).connect(node.address)
    try:
        assert await peer.handshake(), f"honest handshake failed ({peer.last_error})"
        assert await peer.ping(), "no PONG for an honest PING"
    finally:
        await peer.close()
    assert node.proc is not None and node.proc.poll() is None, "the node process died"
    assert node.call("ping")["pong"] is True


def gossip_stats(node: NodeProc) -> dict[str, Any]:
    return dict(node.status()["gossip"])


def forged_event(author: Any, k: int) -> str:
    """A well-formed auction.open whose signature does not verify (one hex digit changed)."""
    from decimal import Decimal

    from p2pauction.state.events import Kind, OpenBody, sign_event

    body = OpenBody(item=f"forged-{k}", currency="USDt", start_price=Decimal(1),
                    min_increment=Decimal(0), ends_at=None, name=None)
    event = sign_event(author, net=NET, kind=Kind.OPEN, body=body, deps=(), lamport=1,
                       ts=1_700_000_000_000 + k)
    obj = json.loads(event.raw)
    sig = obj["sig"]
    obj["sig"] = ("1" if sig[0] != "1" else "2") + sig[1:]
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_a_frame_header_announcing_2_gib_closes_without_allocating(target: NodeProc) -> None:
    async def main() -> None:
        rss_before = proc_rss_kib(target.pid)
        peer = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.2")
        peer.send_raw((2**31).to_bytes(4, "big"))
        sent = 0
        chunk = b"\0" * 65536
        # A node that believed the header would keep reading: offer it 32 MiB of body.
        try:
            while sent < 32 * 2**20:
                peer.send_raw(chunk)
                await peer.drain(timeout=5)
                sent += len(chunk)
        except (ConnectionError, OSError, TimeoutError):
            pass
        assert await peer.closed_by_remote(), "the connection stays open after a 2 GiB header"
        await peer.close()
        growth = proc_rss_kib(target.pid) - rss_before
        print(f"\n2 GiB header: {sent} body bytes accepted before the close, RSS growth {growth} KiB")
        assert growth < 16 * 1024, f"RSS grew by {growth} KiB after a 2 GiB frame header"
        assert sent < 32 * 2**20, "the node kept reading the announced body"
        await serves_honest_peer(target)
    run(main())


def test_one_mib_of_random_bytes_closes_the_connection(target: NodeProc) -> None:
    async def main() -> None:
        peer = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.3")
        peer.send_raw(os.urandom(2**20))
        try:
            await peer.drain(timeout=10)
        except (ConnectionError, OSError, TimeoutError):
            pass
        assert await peer.closed_by_remote(), "random bytes did not close the connection"
        await peer.close()
        await serves_honest_peer(target)
    run(main())


def test_garbage_after_a_valid_handshake_closes_and_repeat_offenders_are_banned(target: NodeProc) -> None:
    async def main() -> None:
        before = gossip_stats(target)["links"]
        garbage = len(b"{not json at all").to_bytes(4, "big") + b"{not json at all"
        closed_by_garbage = 0
        for attempt in range(1, 6):
            peer = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.4")
            if not await peer.handshake():
                await peer.close()
                break  # refused: the host is banned
            assert await peer.ping(), "the link works before the garbage"
            peer.send_raw(garbage)
            assert await peer.closed_by_remote(), "garbage after the handshake did not close"
            closed_by_garbage += 1
            await peer.close()
        else:
            raise AssertionError("5 connections in a row sent garbage and the host is still not banned")
        print(f"\nhost banned after {closed_by_garbage} garbage connection(s)")
        assert 1 <= closed_by_garbage <= 3
        after = gossip_stats(target)["links"]
        assert after["undecryptable"] - before["undecryptable"] == closed_by_garbage
        assert after["bans"] > before["bans"]
        await serves_honest_peer(target)
    run(main())


def test_wrong_net_and_a_stolen_static_key_signature_are_refused(target: NodeProc) -> None:
    async def main() -> None:
        wrong = await RawPeer(Identity.generate(), "some-other-net").connect(target.address, source_ip="127.0.0.5")
        assert not await wrong.handshake(timeout=5), "a node of another network was accepted"
        assert wrong.last_error is not None and "wrong network" in wrong.last_error, wrong.last_error
        await wrong.close()

        # A liar presents an honest node's key and its signature (seen in that node's handshakes)
        # over a Noise static key of its own: the signature does not cover it.
        victim = LocalIdentity.create(Identity.generate(), os.urandom)
        mine = LocalIdentity.create(Identity.generate(), os.urandom)
        stolen = LocalIdentity(node_key=victim.node_key, static=mine.static, static_sig=victim.static_sig)
        liar = await RawPeer(None, NET, local=stolen).connect(target.address, source_ip="127.0.0.5")
        assert not await liar.handshake(timeout=5), "the liar was accepted"
        assert liar.last_error is not None and "signature" in liar.last_error, liar.last_error
        await liar.close()
        await serves_honest_peer(target)
    run(main())


def _idle_connections(addr: str, n: int, ips: list[str]) -> Any:
    async def open_all() -> list[RawPeer]:
        peers = []
        for i in range(n):
            peers.append(await RawPeer(None, NET).connect(addr, source_ip=ips[i % len(ips)]))
        return peers
    return open_all()


@pytest.mark.parametrize("n_ips", [1, 25])
def test_200_idle_connections_are_closed_while_an_honest_peer_joins(target: NodeProc, n_ips: int) -> None:
    """From one host the per-IP cap refuses most at once; from 25 hosts (8 each) they exceed the
    total inbound cap and every handshake slot, and the oldest half-open ones are evicted for
    newcomers. Either way all are closed and an honest peer joins at once."""
    async def main() -> None:
        base = 10 if n_ips == 1 else 100
        ips = [f"127.0.{base}.{i + 1}" for i in range(n_ips)]
        timeouts_before = gossip_stats(target)["links"]["handshake_timeouts"]
        resident = await RawPeer(Identity.generate(), NET).connect(target.address)
        assert await resident.handshake()
        idle = await _idle_connections(target.address, 200, ips)
        assert await resident.ping(n=1), "an established honest peer is not served during the attack"
        t0 = asyncio.get_running_loop().time()
        joined_after: list[float] = []

        async def honest_joins() -> bool:
            peer = await RawPeer(Identity.generate(), NET).connect(target.address)
            try:
                ok = await peer.handshake() and await peer.ping()
            finally:
                await peer.close()
            if ok:
                joined_after.append(asyncio.get_running_loop().time() - t0)
            return ok

        # Idle connections make room for newcomers (oldest half-open evicted), so the honest peer
        # gets in before any of them could have timed out.
        await until(honest_joins, "an honest peer joins during the attack", timeout=HANDSHAKE_TIMEOUT / 2)
        results = await asyncio.gather(*(p.closed_by_remote(HANDSHAKE_TIMEOUT + 10) for p in idle))
        assert all(results), f"{results.count(False)} idle connections still open"
        timed_out = gossip_stats(target)["links"]["handshake_timeouts"] - timeouts_before
        assert timed_out >= min(8, n_ips * 8), f"only {timed_out} closed by the handshake timeout"
        assert await resident.ping(n=2)
        for p in [*idle, resident]:
            await p.close()
        await serves_honest_peer(target)
        print(f"\n[{n_ips} ip(s)] honest peer joined {joined_after[0]:.2f} s into the attack")
    run(main())


def test_a_peer_flooding_forged_events_is_banned_with_bounded_cpu(target: NodeProc) -> None:
    async def main() -> None:
        forger = Identity.generate()
        events = [forged_event(forger, k) for k in range(2000)]
        rejected_before = gossip_stats(target)["events"]["rejected"]
        banned_before = gossip_stats(target)["links"]["banned_rejected"]
        cpu0, t0 = proc_cpu_seconds(target.pid), time.monotonic()
        peer = await RawPeer(forger, NET).connect(target.address, source_ip="127.0.0.7")
        assert await peer.handshake()
        sent = 0
        try:
            for text in events:
                peer.send({"t": "event", "e": text, "h": 0})
                sent += 1
                if sent % 50 == 0:
                    await peer.drain(timeout=5)
        except (ConnectionError, OSError, TimeoutError):
            pass
        assert await peer.closed_by_remote(), "the forger was not disconnected"
        await peer.close()
        # The host stays banned: reconnecting for a while gets nowhere.
        refused = 0
        while time.monotonic() - t0 < 3.0:
            again = await RawPeer(forger, NET).connect(target.address, source_ip="127.0.0.7")
            refused += not await again.handshake(timeout=2)
            await again.close()
        cpu = proc_cpu_seconds(target.pid) - cpu0
        wall = time.monotonic() - t0
        rejected = gossip_stats(target)["events"]["rejected"] - rejected_before
        print(f"\nforged events sent {sent}, rejected by the node {rejected}, "
              f"node CPU {cpu:.2f} s over {wall:.2f} s, {refused} reconnects refused")
        assert refused >= 1 and rejected >= 1
        # Bounded work: the node checked a handful of signatures, not the flood.
        assert rejected <= 64, f"the node verified {rejected} forged events before banning"
        # ...and refused the banned host's reconnects at accept time, before any handshake work.
        # (CPU is printed, not asserted: it scales with how fast this machine lets the attacker
        # reconnect, and timed assertions are flaky on shared machines; the counts are the proof.)
        banned_refusals = gossip_stats(target)["links"]["banned_rejected"] - banned_before
        assert banned_refusals >= refused, f"{banned_refusals} refused as banned, {refused} reconnects"
        await serves_honest_peer(target)
    run(main())


def test_a_peer_that_never_reads_is_dropped_with_bounded_memory(target: NodeProc) -> None:
    """The peer keeps asking for all 300 events (WANT) and never reads the answers. The node's
    serve throttle paces the answers; its send queue fills, and the transport drops the peer."""
    ids = [str(target.call("open", item=f"bulk-{k}", price="5")["auction_id"]) for k in range(300)]

    async def main() -> None:
        dropped_before = target.status()["transport"]["slow_peer_dropped"]
        rss_before = rss_max = proc_rss_kib(target.pid)
        peer = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.8",
                                                                rcvbuf=4096)
        assert await peer.handshake()
        want = {"t": "want", "ids": ids}
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        asked, dropped = 0, False
        while not dropped and loop.time() - t0 < 60:
            try:
                for _ in range(10):
                    peer.send(want)
                    asked += 1
                await peer.drain(timeout=5)
            except (ConnectionError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.25)  # pacing the requests, not synchronisation
            rss_max = max(rss_max, proc_rss_kib(target.pid))
            dropped = target.status()["transport"]["slow_peer_dropped"] > dropped_before
        assert dropped, f"a peer that never reads was not dropped after {asked} WANTs"
        growth = rss_max - rss_before
        print(f"\nWANTs sent {asked} over {loop.time() - t0:.1f} s before the drop; "
              f"node RSS growth at most {growth} KiB")
        assert growth < 48 * 1024, f"RSS grew by {growth} KiB for a peer that never reads"
        assert await peer.closed_by_remote(), "the dropped peer's connection is still open"
        await peer.close()
        await serves_honest_peer(target)
    run(main())


def test_after_all_attacks_an_honest_node_syncs_with_the_target(target: NodeProc, tmp_path: Path) -> None:
    target.call("open", item="after-attacks", price="1")
    honest = NodeProc("honest", tmp_path, NET, [target.address], ["ae_interval=2"])
    honest.start()
    try:
        honest.wait_ready()
        expected = target.status()["events"]
        wait_for(lambda: honest.status()["digest"] == target.status()["digest"],
                 f"the honest node syncs {expected} events", timeout=60)
    finally:
        honest.stop()


def test_a_flipped_bit_on_the_wire_closes_the_link_and_a_v1_peer_is_told_to_upgrade(target: NodeProc) -> None:
    """Over a real socket: a frame whose last byte changed on the way is never answered and the
    node closes the link; a version-1 node that sends its plaintext HELLO gets a clear ERROR."""
    async def main() -> None:
        before = gossip_stats(target)["links"]
        peer = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.9")
        assert await peer.handshake(), peer.last_error
        assert peer.session is not None
        body = bytearray(peer.session.encrypt(b'{"t":"ping","n":77}'))
        body[-1] ^= 0x01
        peer.send_body(bytes(body))
        assert await peer.recv_type("pong", timeout=5) is None, "a tampered PING was answered"
        await peer.close()
        assert gossip_stats(target)["links"]["undecryptable"] == before["undecryptable"] + 1

        old = await RawPeer(Identity.generate(), NET).connect(target.address, source_ip="127.0.0.9")
        old.send({"t": "hello", "net": NET, "ver": 1, "key": Identity.generate().public_hex, "addr": None,
                  "nonce": "ab" * 32, "role": "node"})
        error = await old.recv_type("error", timeout=5)
        assert error is not None and "protocol version 2 required" in error["reason"], error
        assert await old.closed_by_remote(5)
        await old.close()
        await serves_honest_peer(target)
    run(main())
