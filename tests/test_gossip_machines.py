"""The typed pieces of the gossip core: counters with their reported names, the link lifecycle,
and the membership and catch-up machines run on their own (no core, no links)."""

from __future__ import annotations

import random
from dataclasses import fields
from decimal import Decimal

import pytest

from p2pauction.errors import UsageError
from p2pauction.gossip.actions import Send
from p2pauction.gossip.catchup import CatchUp
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.counters import (
    CoreCounters, Counters, DiscoveryCounters, LinkCounters, PlumtreeCounters, TransportCounters, TypeTraffic,
)
from p2pauction.gossip.link import LINK_TRANSITIONS, Link, LinkInput, LinkState
from p2pauction.gossip.membership import Membership
from p2pauction.gossip.messages import Message, WantAncestors
from p2pauction.state.authoring import Author
from p2pauction.state.ledger import Ledger
from tests.gossip_wire import NET, Pipe, identity, make_core

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
    "prune_protected",
    "tree_repairs"]   # added since: a new counter goes at the end, the old ones keep their order
OLD_DISCOVERY_NAMES = ["registered", "heartbeats", "samples", "expired"]
OLD_TRANSPORT_NAMES = [
    "connections_in", "connections_out", "dials", "dials_failed", "conn_cap_refused", "slow_peer_dropped",
    "read_timeouts", "write_timeouts", "bytes_in", "bytes_out", "sends_to_closed", "core_errors",
    "callback_errors"]


@pytest.mark.parametrize("cls, names", [
    (LinkCounters, OLD_LINK_NAMES), (CoreCounters, OLD_EVENT_NAMES),
    (PlumtreeCounters, OLD_PLUMTREE_NAMES), (DiscoveryCounters, OLD_DISCOVERY_NAMES),
    (TransportCounters, OLD_TRANSPORT_NAMES),
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


# --- the membership machine on its own, with a recording host ------------------------------------

class RecordingHost:
    """A MembershipHost that records what the machine asks for (no links, no core)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Link, Message]] = []
        self.dials: list[str] = []
        self.up: list[str] = []

    def send(self, link: Link, msg: Message) -> None:
        self.sent.append((link, msg))

    def close(self, link: Link, reason: str, now: float) -> None:
        raise AssertionError(f"nothing to close here ({reason})")

    def dial(self, addr: str) -> None:
        self.dials.append(addr)

    def connections(self) -> list[Link]:
        return []

    def is_banned(self, key: str, now: float) -> bool:
        return False

    def tree_weight(self, key: str) -> int:
        return 2

    def peer_up(self, link: Link, now: float) -> None:
        self.up.append(link.key or "")


class NoPeerBook:
    def remember_peer(self, public_hex: str, addr: str, seen_at: float) -> None: ...

    def known_peers(self, limit: int = 100) -> list[tuple[str, str]]:
        return []


def test_membership_below_target_dials_passive_peers_a_few_per_tick_never_twice() -> None:
    cfg = GossipConfig(net="machines", listen_addr="10.0.0.1:7000", exempt_ips=())
    host = RecordingHost()
    counters = CoreCounters()
    m = Membership(cfg, "a" * 64, host, NoPeerBook(), random.Random(7), eviction_salt=bytes(32),
                   counters=counters, link_counters=LinkCounters(), next_shuffle=1e9, next_refresh=1e9)
    known = [(f"{i:064x}", f"10.0.1.{i}:7000") for i in range(1, 11)]
    m.learn(known + [("a" * 64, "10.0.0.1:7000")])   # its own key is never a candidate
    assert len(m.passive) == 10
    for tick in range(5):
        m.maintain(float(tick))
        assert len(host.dials) == min(cfg.dials_per_tick * (tick + 1), cfg.target_degree)
    assert len(set(host.dials)) == len(host.dials) == cfg.target_degree == counters.dials
    assert set(host.dials) <= {addr for _, addr in known}
    m.dial_failed(host.dials[0], 5.0)     # a failed dial frees its slot: one more dial, elsewhere
    m.maintain(5.0)
    assert len(host.dials) == cfg.target_degree + 1 and host.dials[-1] not in host.dials[:-1]


# --- the catch-up machine on its own, with a dict for a history ----------------------------------

class DictHistory:
    def __init__(self) -> None:
        self.accepted_ids: dict[str, bytes] = {}
        self.pending_ids: set[str] = set()

    def known(self, event_id: str) -> bool:
        return event_id in self.accepted_ids or event_id in self.pending_ids

    def accepted(self, event_id: str) -> bool:
        return event_id in self.accepted_ids

    def is_pending(self, event_id: str) -> bool:
        return event_id in self.pending_ids

    def get_raw(self, event_id: str) -> bytes | None:
        return self.accepted_ids.get(event_id)


def test_catch_up_asks_the_sender_first_one_peer_at_a_time_and_stops_when_the_dep_arrives() -> None:
    cfg = GossipConfig(net=NET, exempt_ips=())
    seller, bidder = Author(identity(51), NET), Author(identity(52), NET)
    scratch = Ledger(NET)
    opened = seller.open(scratch, item="x", start_price=Decimal(1), wall_ms=1_000)
    scratch.receive(opened)
    bid = bidder.bid(scratch, opened.id, Decimal(2), wall_ms=2_000)
    assert bid.deps == (opened.id,)
    history = DictHistory()
    history.pending_ids.add(bid.id)
    for seed in range(8):   # whatever the rng would pick, the sender is asked first
        catchup = CatchUp(cfg, history, random.Random(seed), CoreCounters(), 0.0)
        catchup.note_pending(bid.raw, "sender")
        assert catchup.catching_up(None)
        asked = catchup.tick(0.0, ["other", "sender", "third"])
        assert [(key, msg.ids) for key, msg in asked] == [("sender", (opened.id,))]
    assert catchup.tick(cfg.fetch_interval, ["other", "sender", "third"]) == []   # asked, not yet overdue
    again = catchup.tick(cfg.fetch_timeout + 0.01, ["other", "sender", "third"])
    assert len(again) == 1 and again[0][1].ids == (opened.id,)                  # overdue: asked again
    history.accepted_ids[opened.id] = opened.raw
    history.pending_ids.discard(bid.id)
    assert catchup.tick(2 * cfg.fetch_timeout, ["other", "sender", "third"]) == []
    assert not catchup.catching_up(None) and catchup.next_deadline() == float("inf")
    # the serving side: the asked id and its ancestors that the asker does not hold
    history.accepted_ids[bid.id] = bid.raw
    assert catchup.on_wanta(WantAncestors(ids=(bid.id,), held="")) == [bid.id, opened.id]
