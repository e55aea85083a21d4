"""GossipCore on one or two hand-pumped links: events, forged events, anti-entropy bytes."""

from __future__ import annotations

import random
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import Accepted, GossipCore
from p2pauction.state.authoring import Author
from p2pauction.state.ledger import Ledger
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore, SqliteStore

from tests.gossip_wire import NET, Pipe, RawPeer, identity, make_core


def make_events(n: int, who: int = 50, start: int = 0) -> list[Any]:
    author = Author(identity(who), NET)
    scratch = Ledger(NET)
    return [author.open(scratch, item=f"item {i}", start_price=Decimal(5), wall_ms=1_000 + i)
            for i in range(start, start + n)]


def core_with(events: list[Any], n: int, **overrides: Any) -> GossipCore:
    store = MemoryStore()
    store.append(events)
    overrides.setdefault("exempt_ips", ())
    cfg = GossipConfig(net=NET, listen_addr=f"10.0.0.{n}:7000", **overrides)
    return GossipCore(cfg, identity(n), Replica(NET, store), random.Random(n), 0.0, entropy=SeededEntropy(n))


def accepted(core: GossipCore) -> list[Accepted]:
    return [a for a in core.take_actions() if isinstance(a, Accepted)]


def test_published_event_crosses_a_link_byte_exact() -> None:
    a, b = make_core(1), make_core(2)
    pipe = Pipe(a, b)
    event = Author(identity(1), NET).open(a.replica.ledger, item="Pic#1 — café", start_price=Decimal(75),
                                          wall_ms=5)
    outcome = a.publish(event, 1.0)
    assert outcome.kind == "accepted"
    pipe.pump(1.0)
    assert b.replica.get_raw(event.id) == event.raw
    assert b.replica.ledger.digest == a.replica.ledger.digest
    assert b.stats()["events"]["copies_received"] == 1


def test_accepted_actions_say_own_or_not() -> None:
    a = make_core(1)
    event = make_events(1, who=1)[0]
    a.publish(event, 0.0)
    got = accepted(a)
    assert [(x.event.id, x.own, x.hops) for x in got] == [(event.id, True, 0)]
    b = make_core(2)
    peer = RawPeer(b, 5, identity(1))
    peer.handshake()
    peer.send({"t": "event", "e": event.raw.decode(), "h": 1})
    backlog = b.__dict__.get("_wire_backlog", []) + b.take_actions()
    got_b = [x for x in backlog if isinstance(x, Accepted)]
    assert [(x.event.id, x.own, x.hops) for x in got_b] == [(event.id, False, 1)]


def test_events_of_one_chunk_are_stored_in_one_commit_before_any_output(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = SqliteStore(path)
    cfg = GossipConfig(net=NET, listen_addr="10.0.0.2:7000", exempt_ips=())
    core = GossipCore(cfg, identity(2), Replica(NET, store), random.Random(2), 0.0, entropy=SeededEntropy(2))
    peer = RawPeer(core, 5, identity(1))
    peer.handshake()
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    events = make_events(3, who=1)
    chunk = b"".join(peer.sealed({"t": "event", "e": e.raw.decode(), "h": 1}) for e in events)
    core.data_received(5, chunk, 1.0)
    store._db.set_trace_callback(None)
    assert [x for x in statements if x in ("BEGIN", "COMMIT")] == ["BEGIN", "COMMIT"]
    assert statements[-1] == "COMMIT"  # nothing written after the commit
    # By the time the driver takes the outputs (Accepted, forwards), the events are durable.
    durable = sqlite3.connect(path).execute("SELECT COUNT(*) FROM events").fetchone()[0]
    backlog = core.__dict__.get("_wire_backlog", []) + core.take_actions()
    assert durable == 3 and len([a for a in backlog if isinstance(a, Accepted)]) == 3


def forge(event: Any) -> str:
    text: str = event.raw.decode()
    at = text.index('"sig":"') + 7
    flipped = "0" if text[at] != "0" else "1"
    return text[:at] + flipped + text[at + 1:]


def test_forged_events_get_the_peer_banned_and_are_never_accepted() -> None:
    a, b = make_core(1), make_core(2)
    honest = Pipe(a, b)
    attacker = RawPeer(a, 5, identity(9), remote="203.0.113.9:4000")
    attacker.handshake()
    sent = 0
    for event in make_events(20, who=9):
        attacker.send({"t": "event", "e": forge(event), "h": 1})
        sent += 1
        if attacker.closed:
            break
    assert attacker.closed is not None and "banned" in attacker.closed
    assert sent == 5  # 5 x 20 points reach the threshold of 100
    stats = a.stats()
    assert stats["events"]["rejected_by_reason"] == {"bad_signature": 5}
    assert len(a.replica.ledger) == 0
    assert a.active_keys() == [b.key] and not honest.closed
    again = RawPeer(a, 6, identity(9), remote="198.51.100.1:4000")
    again.handshake()
    assert again.closed is not None and "banned" in again.closed


def test_invalid_unicode_in_event_text_is_a_violation_not_a_crash() -> None:
    a = make_core(1)
    peer = RawPeer(a, 5, identity(9))
    peer.handshake()
    body = peer.session.encrypt(b'{"t":"event","e":"\\ud800","h":1}')  # a lone surrogate: valid JSON, not encodable
    peer.send_bytes(len(body).to_bytes(4, "big") + body)
    assert peer.closed is not None and "Unicode" in peer.closed
    assert a.stats()["links"]["internal_errors"] == 0


def run_ae_round(a: GossipCore, b: GossipCore, pipe: Pipe, now: float) -> float:
    """Advance ``a`` to its next anti-entropy round and pump until quiet."""
    before = a.stats()["events"]["ae_rounds"]
    while a.stats()["events"]["ae_rounds"] == before:
        now = a.next_deadline()
        a.tick(now)
        b.tick(now)
        pipe.pump(now)
    for _ in range(3):
        now += 0.01
        pipe.pump(now)
    return now


def test_agreeing_round_costs_the_same_bytes_at_any_history_size() -> None:
    costs = []
    for n in (100, 1000):
        events = make_events(n)
        a, b = core_with(events, 1), core_with(events, 2)
        pipe = Pipe(a, b)
        sync_before = a.by_type["sync"].out_bytes if "sync" in a.by_type else 0
        run_ae_round(a, b, pipe, 0.0)
        sync = a.by_type["sync"].out_bytes - sync_before
        assert "tree" not in a.by_type and "tree" not in b.by_type
        costs.append(sync)
    assert costs[0] == costs[1] and costs[0] < 64


def ae_until_agreed(a: GossipCore, b: GossipCore, rounds: int) -> None:
    """Anti-entropy rounds from ``a`` to ``b`` until their digests agree (at most ``rounds``)."""
    pipe = Pipe(a, b)
    now = 0.0
    for _ in range(rounds):
        now = run_ae_round(a, b, pipe, now)
        if a.replica.ledger.digest == b.replica.ledger.digest:
            return


def test_anti_entropy_reconciles_both_ways_without_dissemination() -> None:
    shared = make_events(40)
    only_a = make_events(25, who=51)
    only_b = make_events(7, who=52)
    a = core_with(shared + only_a, 1, dissemination="none", ae_interval=1.0)
    b = core_with(shared + only_b, 2, dissemination="none", ae_interval=1.0)
    ae_until_agreed(a, b, rounds=4)
    assert len(a.replica.ledger) == len(b.replica.ledger) == 72
    assert a.replica.ledger.digest == b.replica.ledger.digest
    repaired = a.stats()["events"]["ae_accepted"] + b.stats()["events"]["ae_accepted"]
    assert repaired == 32


def test_anti_entropy_over_a_store_backed_summary_reconciles_with_an_in_memory_one(tmp_path: Any) -> None:
    """A node over SQLite keeps no id in memory (its summary reads the store's index) and still
    reconciles, both ways, with a node whose summary holds every id (a ledger without archive)."""
    shared = make_events(30)
    only_a, only_b = make_events(12, who=51), make_events(9, who=52)
    store = SqliteStore(tmp_path / "a.db")
    store.append(shared + only_a)
    cfg = dict(exempt_ips=(), dissemination="none", ae_interval=1.0)
    a = GossipCore(GossipConfig(net=NET, listen_addr="10.0.0.1:7000", **cfg), identity(1), Replica(NET, store),
                   random.Random(1), 0.0, entropy=SeededEntropy(1))
    memory = MemoryStore()
    memory.append(shared + only_b)
    b = GossipCore(GossipConfig(net=NET, listen_addr="10.0.0.2:7000", **cfg), identity(2),
                   Replica(NET, memory, cache_auctions=None), random.Random(2), 0.0, entropy=SeededEntropy(2))
    assert a.summary.ids_in_memory == 0 and b.summary.ids_in_memory == 39
    ae_until_agreed(a, b, rounds=6)
    assert len(a.replica.ledger) == len(b.replica.ledger) == 51
    assert a.summary.root() == b.summary.root()
    assert a.summary.ids_in_memory == 0
    store.close()


def test_fresh_node_catches_up_past_the_serve_limit() -> None:
    events = make_events(300)
    full = core_with(events, 1, ae_serve_max=64, ae_interval=1.0)
    fresh = core_with([], 2, ae_serve_max=64, ae_interval=1.0)
    pipe = Pipe(fresh, full)
    now = 0.0
    for _ in range(30):
        now = run_ae_round(fresh, full, pipe, now)
        if len(fresh.replica.ledger) == 300:
            break
    assert len(fresh.replica.ledger) == 300
    assert fresh.stats()["events"]["pending"] == 0  # served in causal (store) order


def test_state_is_rebuilt_into_the_summary_on_start() -> None:
    events = make_events(30)
    core = core_with(events, 1)
    assert core.stats()["events"]["summary_count"] == 30
    assert core.summary.root() == core_with(list(reversed(events)), 2).summary.root()


def test_a_batch_of_forged_events_costs_at_most_one_sub_batch_after_the_ban() -> None:
    a = make_core(1)
    attacker = RawPeer(a, 5, identity(9), remote="203.0.113.9:4000")
    attacker.handshake()
    attacker.send({"t": "events", "es": [forge(e) for e in make_events(100, who=9)]})
    assert attacker.closed is not None and "banned" in attacker.closed
    assert 5 <= a.stats()["events"]["rejected"] <= 16
    assert len(a.replica.ledger) == 0


def test_events_batch_keeps_summary_in_step_with_ledger() -> None:
    a = make_core(1)
    good = make_events(20, who=9)
    peer = RawPeer(a, 5, identity(9))
    peer.handshake()
    peer.send({"t": "events", "es": [e.raw.decode() for e in good]})
    assert len(a.replica.ledger) == 20 == a.stats()["events"]["summary_count"]
    assert a.stats()["events"]["ae_accepted"] == 20
