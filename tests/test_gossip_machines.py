"""The typed pieces of the gossip core: counters with their reported names, the replica seam."""

from __future__ import annotations

from dataclasses import fields

import pytest

from p2pauction.gossip.counters import (
    CoreCounters, Counters, DiscoveryCounters, LinkCounters, PlumtreeCounters, TypeTraffic,
)
from tests.gossip_wire import Pipe, make_core

# The names stats() reported when the counters were string-keyed dicts, in their order: the
# simulator's reports, benchmarks and dashboards read these keys.
OLD_LINK_NAMES = [
    "frames_in", "frames_out", "bytes_in", "bytes_out", "conns_in", "conns_out", "handshakes_ok",
    "handshake_failed", "handshake_timeouts", "malformed", "violations", "rate_limited",
    "inbound_rejected", "banned_rejected", "bans", "peer_errors", "internal_errors", "dead_links",
    "duplicate_links", "handshake_evicted", "frame_timeouts", "undecryptable", "inbound_evicted"]
OLD_EVENT_NAMES = [
    "copies_received", "duplicates", "accepted", "own", "pending", "rejected", "store_failures",
    "unresolved", "ae_rounds", "ae_events_received", "ae_events_served", "ae_accepted", "graft_served",
    "serve_throttled", "bootstrap_dials", "dials", "dial_failures", "samples_asked", "shuffles",
    "wanta_sent", "wanta_ids_sent", "wanta_served", "serve_queued", "serve_dropped", "push_deferred"]
OLD_PLUMTREE_NAMES = [
    "ihave_sent", "ihave_ids_sent", "ihave_recv", "ihave_ids_recv", "ihave_dropped", "graft_sent",
    "graft_recv", "prune_sent", "prune_recv", "missing_dropped", "optimized", "ihave_ids_skipped",
    "prune_protected"]
OLD_DISCOVERY_NAMES = ["registered", "heartbeats", "samples", "expired"]


@pytest.mark.parametrize("cls, names", [
    (LinkCounters, OLD_LINK_NAMES), (CoreCounters, OLD_EVENT_NAMES),
    (PlumtreeCounters, OLD_PLUMTREE_NAMES), (DiscoveryCounters, OLD_DISCOVERY_NAMES),
    (TypeTraffic, ["in_frames", "in_bytes", "out_frames", "out_bytes"])])
def test_counters_report_the_old_names_in_the_old_order(cls: type[Counters], names: list[str]) -> None:
    assert list(cls().to_json()) == names
    assert all(f.type == "int" for f in fields(cls))


def test_counters_are_slotted_so_a_misspelt_counter_fails() -> None:
    c = CoreCounters()
    with pytest.raises(AttributeError):
        c.acepted = 1  # type: ignore[attr-defined]
    c.accepted += 2
    assert c.to_json()["accepted"] == 2


def test_stats_carry_every_counter_under_its_old_name_with_its_value() -> None:
    a, b = make_core(1), make_core(2)
    Pipe(a, b).pump(1.0)
    stats = a.stats(1.0)
    links = stats["links"]
    assert [k for k in links if k in OLD_LINK_NAMES] == OLD_LINK_NAMES
    assert links["handshakes_ok"] == a.counters.handshakes_ok == 1
    assert links["frames_out"] == a.counters.frames_out > 0
    assert list(stats["events"])[:len(OLD_EVENT_NAMES)] == OLD_EVENT_NAMES
    assert list(stats["plumtree"]) == OLD_PLUMTREE_NAMES
    sent = {t: v["out_frames"] for t, v in links["by_type"].items()}
    assert sent["handshake"] == a.by_type["handshake"].out_frames >= 1
