"""The pending buffer: its real memory is bounded by its byte cap, and flooders are penalised.

Defect 5 of issue 11: 20,000 bids with 32 unknown deps each grew RSS by 110 MB under a 16 MiB cap
(the cap counted wire bytes only, while the decoded event, its dep strings and the waiting index
take about five times more), and the peer that flooded the buffer was never penalised.
"""

from __future__ import annotations

import random
import tracemalloc
from decimal import Decimal

from p2pauction.state.events import canonical
from p2pauction.state.identity import SignatureVerifier
from p2pauction.state.ledger import Ledger
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore
from tests.gossip_wire import RawPeer, identity, make_core
from tests.state_helpers import NET, author, forge

FLOOD = 20_000
CAP = 16 * 2**20


def flood_bid(rng: random.Random, i: int, deps: int = 32) -> bytes:
    """A validly signed bid whose deps (and auction) nobody will ever have."""
    return forge(identity(9), kind="bid.place",
                 body={"auction": rng.randbytes(32).hex(), "amount": "1000"},
                 deps=sorted(rng.randbytes(32).hex() for _ in range(deps)), lamport=7, ts=1000 + i)


def unsigned_flood_bid(rng: random.Random, i: int, deps: int = 32) -> bytes:
    """The same shape and size with a dummy signature (for a ledger that trusts signatures: the
    flood test measures memory, not 40,000 Ed25519 operations)."""
    obj = {"net": NET, "kind": "bid.place", "author": identity(9).public_hex,
           "body": {"auction": rng.randbytes(32).hex(), "amount": "1000"},
           "deps": sorted(rng.randbytes(32).hex() for _ in range(deps)), "lamport": 7, "ts": 1000 + i,
           "sig": "ab" * 64}
    return canonical(obj)


class TrustingVerifier(SignatureVerifier):
    def verify(self, public_hex: str, signature: bytes, message: bytes) -> bool:
        return True


def test_pending_buffer_real_memory_stays_within_twice_its_cap_under_the_flood() -> None:
    rng = random.Random(5)
    ledger = Ledger(NET, pending_max_bytes=CAP, verifier=TrustingVerifier())
    flood = [unsigned_flood_bid(rng, i) for i in range(FLOOD)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(FLOOD):
            # a fresh copy made while tracing, so whatever the ledger keeps of it is counted
            raw, flood[i] = bytes(bytearray(flood[i])), b""
            ledger.receive_raw(raw, origin="flooder")
            del raw
            if i % 2000 == 0:
                ledger.take_unresolved()
        ledger.take_unresolved()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    c = ledger.counters
    assert c.pending_bytes <= CAP and c.evicted > FLOOD // 2
    assert c.pending + c.evicted == FLOOD
    # the ledger's whole growth: pending entries, waiting index, rejected memory, everything
    assert used <= 2 * CAP, f"{used / 2**20:.1f} MiB for a {CAP / 2**20:.0f} MiB cap"
    # and the estimate is not wildly pessimistic either: the cap is put to use
    assert used >= CAP // 2, f"only {used / 2**20:.1f} MiB used of a {CAP / 2**20:.0f} MiB cap"


def test_unresolved_pending_events_are_reported_with_their_origin() -> None:
    rng = random.Random(6)
    ledger = Ledger(NET, pending_max_count=3)
    raws = [flood_bid(rng, i, deps=2) for i in range(5)]
    for n, raw in enumerate(raws):
        ledger.receive_raw(raw, origin=f"peer{n}")
    gone = ledger.take_unresolved()
    assert [(u.origin, u.reason) for u in gone] == [("peer0", "evicted"), ("peer1", "evicted")]
    assert ledger.take_unresolved() == []

    # a pending event whose dep turns out invalid is unresolved too; a released one is not
    seller, bidder = author(1, "S"), author(2, "B")
    scratch = Ledger(NET)
    opened = seller.open(scratch, item="Pic", start_price=Decimal(10), wall_ms=1)
    scratch.receive(opened)
    good = bidder.bid(scratch, opened.id, Decimal(11), wall_ms=2)
    fine = Ledger(NET)
    fine.receive_raw(good.raw, origin="honest")
    fine.receive_raw(opened.raw, origin="honest")
    assert fine.has(good.id) and fine.take_unresolved() == []

    low = forge(bidder.identity, kind="bid.place", body={"auction": opened.id, "amount": "1"},
                deps=[opened.id], lamport=2, ts=3)        # below the start price: invalid
    from p2pauction.state.events import decode_event
    child = forge(bidder.identity, kind="bid.place", body={"auction": opened.id, "amount": "12"},
                  deps=[decode_event(low).id], lamport=3, ts=4)
    bad = Ledger(NET)
    bad.receive_raw(opened.raw)
    bad.receive_raw(child, origin="relay")
    bad.receive_raw(low, origin="author")
    assert [(u.origin, u.reason) for u in bad.take_unresolved()] == [("relay", "invalid_dep")]


def test_rollback_restores_the_pending_buffer_and_its_unresolved_reports() -> None:
    rng = random.Random(7)
    ledger = Ledger(NET, pending_max_count=3)
    for i in range(3):
        ledger.receive_raw(flood_bid(rng, i, deps=2), origin="a")
    before = (sorted(ledger._pending), ledger.counters.to_json())
    ledger.begin()
    for i in range(3, 6):
        ledger.receive_raw(flood_bid(rng, i, deps=2), origin="b")
    ledger.rollback()
    assert (sorted(ledger._pending), ledger.counters.to_json() | {"rollbacks": 0}) == before
    assert ledger.take_unresolved() == []
    assert sum(len(w) for w in ledger._waiting.values()) == 6


def test_core_penalises_the_peer_whose_pending_events_never_resolve() -> None:
    core = make_core(1, net=NET)
    core.replica = Replica(NET, MemoryStore(), pending_max_count=20)
    flooder = RawPeer(core, 5, identity(2), net=NET, remote="10.9.9.1:5000")
    flooder.handshake()
    honest = RawPeer(core, 6, identity(3), net=NET, remote="10.9.9.2:5000")
    honest.handshake()

    # the honest peer's pending events resolve (their dep arrives later): no penalty
    seller, bidder = author(1, "S"), author(2, "B")
    scratch = Ledger(NET)
    opened = seller.open(scratch, item="Pic", start_price=Decimal(10), wall_ms=1)
    scratch.receive(opened)
    bid = bidder.bid(scratch, opened.id, Decimal(11), wall_ms=2)
    for ev in (bid, opened):
        honest.send({"t": "event", "e": ev.raw.decode(), "h": 1}, now=1.0)
    assert core.replica.ledger.has(bid.id)
    assert core.scores.score("key:" + identity(3).public_hex, 1.0) == 0.0

    rng = random.Random(8)
    for i in range(600):
        if flooder.closed is not None:
            break
        flooder.send({"t": "event", "e": flood_bid(rng, i, deps=4).decode(), "h": 1}, now=2.0)
    assert core.ev.unresolved > 0
    assert flooder.closed is not None and "banned" in flooder.closed, flooder.closed
    assert core.scores.is_banned("key:" + identity(2).public_hex, 2.0)
    assert honest.closed is None
    bans = core.counters.bans
    # the banned flooder's events still in the buffer are evicted later: no second ban, no new
    # penalty for the peer whose events pushed them out
    for i in range(20):
        honest.send({"t": "event", "e": flood_bid(rng, 1000 + i, deps=1).decode(), "h": 1}, now=3.0)
    assert core.counters.bans == bans and honest.closed is None
    assert core.scores.score("key:" + identity(3).public_hex, 3.0) == 0.0


def test_pending_events_never_resolved_expire_after_ten_sweeps_and_are_reported() -> None:
    rng = random.Random(9)
    ledger = Ledger(NET)
    old = [flood_bid(rng, i, deps=2) for i in range(2)]
    for raw in old:
        ledger.receive_raw(raw, origin="slow-drip")
    for _ in range(9):
        assert ledger.sweep_pending() == 0
    young = flood_bid(rng, 9, deps=2)
    ledger.receive_raw(young, origin="other")
    assert ledger.sweep_pending() == 2
    assert [(u.origin, u.reason) for u in ledger.take_unresolved()] == [("slow-drip", "expired")] * 2
    assert ledger.counters.pending == 1 and ledger.counters.expired == 2
    (left,) = ledger._pending.values()
    assert set(ledger._waiting) == set(left.missing)      # the expired ones left no index entries


def test_core_sweeps_pending_events_and_penalises_their_sender() -> None:
    core = make_core(1, net=NET, pending_sweep_interval=1.0)
    peer = RawPeer(core, 5, identity(2), net=NET, remote="10.9.9.1:5000")
    peer.handshake()
    peer.send({"t": "event", "e": flood_bid(random.Random(10), 0, deps=1).decode(), "h": 1}, now=0.5)
    assert core.replica.ledger.counters.pending == 1
    now = 0.5
    while core.ev.unresolved == 0 and now < 30.0:
        now += 0.5
        core.tick(now)
        peer.collect()
    assert core.replica.ledger.counters.expired == 1 and core.ev.unresolved == 1
    assert 9.0 <= now <= 12.0                 # ten sweeps of one second each
    assert core.scores.score("key:" + identity(2).public_hex, now) < 0
