"""The discovery (bootstrap) core: register, heartbeats and expiry, random samples."""

from __future__ import annotations

import random

from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.discovery import DiscoveryCore, Registry

from tests.gossip_wire import NET, Pipe, RawPeer, identity, make_core


def make_discovery(**overrides: object) -> DiscoveryCore:
    cfg = GossipConfig(net=NET, listen_addr="10.0.0.100:7000", exempt_ips=(), **overrides)  # type: ignore[arg-type]
    return DiscoveryCore(cfg, identity(100), random.Random(1), 0.0, entropy=SeededEntropy(100))


def registered_peer(disc: DiscoveryCore, n: int, now: float = 0.0, addr: str | None = None) -> RawPeer:
    peer = RawPeer(disc, n, identity(n), remote=f"192.0.2.{n}:40000", now=now)
    peer.handshake(now=now)
    assert peer.their_identity().role == "bootstrap"
    peer.send({"t": "register", "key": identity(n).public_hex, "addr": addr or f"192.0.2.{n}:7000"}, now)
    return peer


def test_register_and_sample_excludes_the_asker() -> None:
    disc = make_discovery()
    peers = [registered_peer(disc, n) for n in range(1, 6)]
    reply = peers[0].send({"t": "sample", "n": 10})
    assert reply[-1]["t"] == "peers"
    keys = [k for k, _ in reply[-1]["peers"]]
    assert len(keys) == 4 and identity(1).public_hex not in keys
    assert sorted(keys) == sorted(identity(n).public_hex for n in range(2, 6))
    assert disc.stats()["registered"] == 5


def test_sample_is_bounded_by_n() -> None:
    disc = make_discovery()
    peers = [registered_peer(disc, n) for n in range(1, 12)]
    reply = peers[0].send({"t": "sample", "n": 3})
    assert len(reply[-1]["peers"]) == 3


def test_unspecified_host_is_fixed_from_the_socket() -> None:
    disc = make_discovery()
    registered_peer(disc, 1, addr="0.0.0.0:7005")
    asker = registered_peer(disc, 2)
    reply = asker.send({"t": "sample", "n": 5})
    assert reply[-1]["peers"] == [[identity(1).public_hex, "192.0.2.1:7005"]]


def test_entries_expire_after_missed_heartbeats() -> None:
    disc = make_discovery(heartbeat_interval=5.0, heartbeat_missed=3)
    alive = registered_peer(disc, 1)
    registered_peer(disc, 2)
    for t in (5.0, 10.0, 14.0):
        alive.send({"t": "heartbeat"}, t)
        disc.tick(t)
    disc.tick(16.0)
    asker = registered_peer(disc, 3, now=16.0)
    keys = [k for k, _ in asker.send({"t": "sample", "n": 10}, 16.0)[-1]["peers"]]
    assert keys == [identity(1).public_hex]
    assert disc.stats()["expired"] == 1


def test_register_for_another_key_is_a_violation() -> None:
    disc = make_discovery()
    peer = RawPeer(disc, 1, identity(1))
    peer.handshake()
    peer.send({"t": "register", "key": identity(2).public_hex, "addr": "192.0.2.1:7000"})
    assert peer.closed is not None and "other than the one authenticated" in peer.closed


def test_gossip_messages_are_refused_by_the_bootstrap() -> None:
    disc = make_discovery()
    peer = registered_peer(disc, 1)
    peer.send({"t": "ihave", "ids": []})
    assert peer.closed is not None and "not a discovery message" in peer.closed


def test_node_registers_and_asks_for_a_sample() -> None:
    node = make_core(1, bootstraps=["10.0.0.100:7000"])
    disc = make_discovery()
    Pipe(node, disc, a_addr="10.0.0.1:40000", b_addr="10.0.0.100:7000")
    assert disc.stats()["registered"] == 1
    assert disc.stats()["samples"] == 1
    assert node.stats()["bootstrap_connected"]
    assert node.active_keys() == []  # a bootstrap is not a gossip peer


def test_registry_sampling_and_removal_stay_consistent() -> None:
    reg = Registry(max_entries=50)
    rng = random.Random(3)
    keys = [f"{i:064x}" for i in range(80)]
    for i, k in enumerate(keys):
        reg.refresh(k, f"192.0.2.1:{1000 + i}", float(i))
    assert len(reg) == 50  # the oldest were dropped
    for k in keys[30:40]:
        reg.remove(k)
    assert len(reg) == 40
    got = reg.sample(100, None, rng)
    assert len(got) == 40 and len({k for k, _ in got}) == 40
    assert reg.expire(older_than=60.0) == 20  # keys 40..59 (30..39 were removed)
    assert all(k >= keys[60] for k, _ in reg.sample(100, None, rng))
