"""Inbound eviction (eclipse resistance): what is protected, and that a Sybil flood evicts itself."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.gossip.eviction import (PROTECT_BY_USEFULNESS, EvictionCandidate, netgroup,
                                        select_inbound_to_evict)

SALT = b"s" * 32


def peer(key: str, ip: str, *, inbound: bool = True, at: float = 0.0,
         useful: float | None = None) -> EvictionCandidate:
    return EvictionCandidate(key=key, ip=ip, inbound=inbound, connected_at=at, last_useful=useful)


def test_netgroups_are_ipv4_slash16_and_ipv6_slash32() -> None:
    assert netgroup("10.1.2.3") == netgroup("10.1.200.7") != netgroup("10.2.0.1")
    assert netgroup("2001:db8:1::1") == netgroup("2001:db8:ffff::2") != netgroup("2001:db9::1")
    assert netgroup("::ffff:10.1.2.3") == netgroup("10.1.9.9")
    assert netgroup("not-an-ip") == "other:not-an-ip"


def test_outbound_peers_are_never_candidates() -> None:
    assert select_inbound_to_evict([peer("a", "10.0.0.1", inbound=False)], SALT) is None
    assert select_inbound_to_evict([], SALT) is None


def test_the_biggest_group_loses_its_youngest() -> None:
    # Enough peers that protection leaves some candidates; the crowded 10.9/16 pays.
    peers = [peer(f"h{i}", f"192.{i}.0.1", at=float(i)) for i in range(6)]
    peers += [peer(f"s{i}", f"10.9.0.{i}", at=100.0 + i) for i in range(10)]
    victim = select_inbound_to_evict(peers, SALT)
    assert victim == "s9"


def test_recently_useful_peers_are_protected() -> None:
    peers = [peer(f"s{i}", f"10.9.0.{i}", at=100.0 + i) for i in range(20)]
    peers.append(peer("useful", "10.9.1.1", at=500.0, useful=501.0))  # youngest, same group
    for _ in range(15):
        victim = select_inbound_to_evict(peers, SALT)
        assert victim is not None and victim != "useful"
        peers = [p for p in peers if p.key != victim]


def test_a_sybil_storm_never_evicts_the_honest_neighbours() -> None:
    """200 keys from 25 addresses keep connecting; each newcomer takes a slot by eviction."""
    rng = random.Random(7)
    honest = [peer(f"honest{i}", f"{50 + i}.1.0.1", at=float(i), useful=10.0 + i) for i in range(3)]
    sybil_ips = [f"66.{rng.randrange(2)}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(25)]
    connected = list(honest)
    capacity = 12
    for n in range(200):
        now = 100.0 + n
        connected.append(peer(f"sybil{n}", sybil_ips[n % 25], at=now))
        if len(connected) > capacity:
            victim = select_inbound_to_evict(connected, SALT)
            assert victim is not None
            connected = [p for p in connected if p.key != victim]
    assert all(h in connected for h in honest)


candidates = st.lists(st.builds(
    EvictionCandidate,
    key=st.text("abcdef0123456789", min_size=4, max_size=8),
    ip=st.sampled_from(["10.0.0.1", "10.0.5.5", "10.1.0.1", "172.16.0.1", "2001:db8::1", "::1"]),
    inbound=st.booleans(),
    connected_at=st.floats(0, 1000),
    last_useful=st.none() | st.floats(0, 1000)), max_size=30, unique_by=lambda c: c.key)


@settings(max_examples=200, deadline=None)
@given(candidates)
def test_the_victim_is_an_unprotected_inbound_peer(peers: list[EvictionCandidate]) -> None:
    victim = select_inbound_to_evict(peers, SALT)
    inbound = [p for p in peers if p.inbound]
    if victim is None:
        return
    by_key = {p.key: p for p in inbound}
    assert victim in by_key
    most_useful = sorted((p for p in inbound if p.last_useful is not None),
                         key=lambda p: (-(p.last_useful or 0.0), p.key))[:PROTECT_BY_USEFULNESS]
    assert victim not in {p.key for p in most_useful}
    assert select_inbound_to_evict(list(reversed(peers)), SALT) == victim  # order-independent
