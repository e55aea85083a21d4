"""Eclipse resistance (issue 12), at a small scale in virtual time: a storm of Sybil nodes with
fresh keys from a few IPs keeps reconnecting to one target; the target keeps honest neighbours
(outbound slots inbound peers cannot take; inbound eviction that protects useful, old and
network-diverse peers) and receives every honest auction within 5 s.

The full-scale figures (200 keys, 25 IPs, 60 s) come from ``benchmarks/sybil_storm.py``.
"""

from __future__ import annotations

import pytest

from tests.gossip_storm import StormResult, run_storm


@pytest.fixture(scope="module")
def storm() -> StormResult:
    return run_storm(honest=10, sybil_keys=40, sybil_ips=10, storm_seconds=20.0, seed=3)


def test_the_target_keeps_at_least_two_honest_neighbours_throughout_the_storm(storm: StormResult) -> None:
    assert storm.sybil_connections >= 40, "the storm did not happen"
    assert storm.min_honest_neighbours >= 2, storm.summary()


def test_the_target_receives_every_honest_auction_within_5_s(storm: StormResult) -> None:
    assert storm.published >= 10
    assert storm.missed == 0, storm.summary()
    assert storm.worst_delay <= 5.0, storm.summary()
