"""The typed pieces of the gossip core: counters with their reported names, the link lifecycle."""

from __future__ import annotations

from dataclasses import fields

import pytest

from p2pauction.errors import UsageError
from p2pauction.gossip.actions import Send
from p2pauction.gossip.counters import (
    CoreCounters, Counters, DiscoveryCounters, LinkCounters, PlumtreeCounters, TypeTraffic,
)
from p2pauction.gossip.link import LINK_TRANSITIONS, Link, LinkInput, LinkState
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


# --- the link lifecycle ---------------------------------------------------------------------------

def a_link() -> Link:
    core = make_core(1)
    core.connection_made(1, outbound=True, remote_addr="10.0.0.2:7000", now=0.0)
    link = core.links.get(1)
    assert link is not None
    return link


def test_every_transition_not_in_the_table_is_refused_and_leaves_the_state() -> None:
    link = a_link()
    illegal = [(s, i) for s in LinkState for i in LinkInput if (s, i) not in LINK_TRANSITIONS]
    assert len(illegal) == len(LinkState) * len(LinkInput) - len(LINK_TRANSITIONS) > 0
    for state, event in illegal:
        link.state = state
        with pytest.raises(UsageError, match=event.value):
            link.advance(event)
        assert link.state is state


def test_every_legal_transition_moves_to_its_target_and_returns_the_state_left() -> None:
    link = a_link()
    for (state, event), target in LINK_TRANSITIONS.items():
        link.state = state
        assert link.advance(event) is state and link.state is target


def test_the_transition_table_is_total_over_its_states() -> None:
    named = {s for s, _ in LINK_TRANSITIONS} | set(LINK_TRANSITIONS.values())
    assert named == set(LinkState)
    reachable, frontier = {LinkState.HANDSHAKING}, [LinkState.HANDSHAKING]
    while frontier:
        state = frontier.pop()
        for (s, _), target in LINK_TRANSITIONS.items():
            if s is state and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(LinkState)
    # the driver may report any live link gone; a gone link is final
    assert all(LINK_TRANSITIONS[(s, LinkInput.LOST)] is LinkState.CLOSED for s in LinkState if s is not LinkState.CLOSED)
    assert not [k for k in LINK_TRANSITIONS if k[0] is LinkState.CLOSED]


def test_a_core_link_goes_through_its_states_and_is_brought_down_once() -> None:
    a, b = make_core(1), make_core(2)
    a.connection_made(1, outbound=True, remote_addr="10.0.0.2:7000", now=0.0)
    link = a.links.get(1)
    assert link is not None
    assert link.state is LinkState.HANDSHAKING and not link.authenticated
    b.connection_made(2, outbound=False, remote_addr="10.0.0.1:40001", now=0.0)
    for _ in range(4):   # the three Noise messages, one hop at a time
        for src, dst, conn in ((a, b, 2), (b, a, 1)):
            for action in src.take_actions():
                if isinstance(action, Send):
                    dst.data_received(conn, action.data, 0.0)
    assert link.state is LinkState.ESTABLISHED and link.key == b.key and a.active_keys() == [b.key]
    a.links.close(link, "test: going away", 1.0)
    assert link.state is LinkState.CLOSING and link.closed and link.authenticated
    assert a.active_keys() == [] and a.links.stats(1.0)["connections"] == 0
    a.connection_lost(1, 1.0)   # the driver confirms: nothing is brought down a second time
    assert link.state is LinkState.CLOSED and a.links.get(1) is None
    assert a.active_keys() == [] and len(a.membership.passive) == 1
    inbound = b.links.get(2)
    assert inbound is not None
    b.links.close(inbound, "test: going away", 1.0)
    b.connection_lost(2, 1.0)
    assert inbound.state is LinkState.CLOSED and b.links._n_inbound == 0 and b.links._per_ip == {}
