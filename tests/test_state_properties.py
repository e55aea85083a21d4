"""Strong eventual consistency of the ledger, checked on generated multi-author workloads.

Authors act on *partial views* (a random subset of earlier events), so the workloads have
concurrent bids, double closes (a seller closing from a view without its first close), late bids
(a bidder who has not seen the close), and hostile events (rule breakers, forged signatures, and
children of invalid events). Every permutation and duplication of the event set must give the
same digest and the same view of every auction, and the views must match a brute-force oracle.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pauction.errors import RuleViolation
from p2pauction.state.events import BidBody, CloseBody, Event, Kind, decode_event
from p2pauction.state.identity import SignatureVerifier
from p2pauction.state.ledger import Ledger, OutcomeKind, Status
from p2pauction.state.money import format_money
from tests.state_helpers import NET, author, forge, identity

AUTHORS = [author(i, f"P{i}") for i in range(1, 6)]
_VERIFIER = SignatureVerifier(cache_size=100_000)   # views re-verify the same events many times
ACTIONS = ["open", "bid", "bid", "bid", "close", "hostile"]


def _view(raws: list[bytes], rng: random.Random, keep: float) -> Ledger:
    """A partial view: a random subset, fed in causal order; events missing deps stay pending."""
    ledger = Ledger(NET, verifier=_VERIFIER)
    for raw in raws:
        if rng.random() < keep:
            ledger.receive_raw(raw)
    return ledger


def _hostile(rng: random.Random, view: Ledger, aid: str, raws: list[bytes], bad: list[str]) -> bytes | None:
    a = view.auction(aid)
    heads = list(view.heads(aid))
    lamport = 1 + max(view.lamport_of(h) for h in heads)
    bidder = identity(rng.randrange(2, 6))
    choice = rng.randrange(5)
    best = a.leading.amount if a.leading else a.start_price
    if choice == 0:   # not above the best in its past (or below start)
        body: dict[str, Any] = {"auction": aid, "amount": format_money(max(Decimal(0), best - 1))}
        return forge(bidder, kind="bid.place", body=body, deps=heads, lamport=lamport, ts=5)
    if choice == 1:   # a close by someone other than the seller
        return forge(bidder, kind="auction.close", body={"auction": aid, "winner": None}, deps=heads,
                     lamport=lamport, ts=5)
    if choice == 2:   # the seller names a wrong winner
        seller = next(x.identity for x in AUTHORS if x.identity.public_hex == a.seller)
        return forge(seller, kind="auction.close", body={"auction": aid, "winner": "f" * 64}, deps=heads,
                     lamport=lamport, ts=5)
    if choice == 3:   # forged signature on an otherwise fine bid
        body = {"auction": aid, "amount": format_money(best + 1000)}
        return forge(bidder, kind="bid.place", body=body, deps=heads, lamport=lamport, ts=5,
                     sign_as=identity(99))
    if bad:           # a child of an invalid event: must be rejected too (invalid_dep)
        dep = rng.choice(bad)
        body = {"auction": aid, "amount": format_money(best + 5000)}
        return forge(bidder, kind="bid.place", body=body, deps=[dep], lamport=99, ts=5)
    return None


@st.composite
def workloads(draw: st.DrawFn) -> list[bytes]:
    return generate(draw(st.integers(0, 2**32)), draw(st.integers(4, 40)))


def generate(seed: int, n_steps: int) -> list[bytes]:
    """A workload: the seed drives who acts, on which partial view, and how."""
    rng = random.Random(seed)
    raws: list[bytes] = []
    bad: list[str] = []            # ids of events that carry a content-invalid verdict
    clock = 1000
    for _ in range(n_steps):
        clock += 1
        view = _view(raws, rng, keep=rng.choice((0.5, 0.8, 1.0)))
        auctions = view.auction_ids()
        action = rng.choice(ACTIONS) if auctions else "open"
        who = rng.choice(AUTHORS)
        try:
            if action == "open":
                ends = clock + 20 if rng.random() < 0.3 else None
                inc = rng.choice((Decimal(0), Decimal("0.5")))
                e = who.open(view, item=f"item{clock}", start_price=Decimal(rng.randrange(1, 50)),
                             min_increment=inc, ends_at=ends, wall_ms=clock)
            elif action == "bid":
                aid = rng.choice(auctions)
                a = view.auction(aid)
                base = a.leading.amount + a.min_increment if a.leading else a.start_price
                amount = base + rng.choice((Decimal(0), Decimal("0.5"), Decimal(1), Decimal(7)))
                if a.leading and amount == a.leading.amount:
                    amount += Decimal("0.25")
                e = who.bid(view, aid, amount, wall_ms=clock)
            elif action == "close":
                aid = rng.choice(auctions)
                seller = next(x for x in AUTHORS if x.identity.public_hex == view.auction(aid).seller)
                e = seller.close(view, aid, wall_ms=clock)
            else:
                raw = _hostile(rng, view, rng.choice(auctions), raws, bad)
                if raw is not None:
                    raws.append(raw)
                    if _VERIFIER.verify(*_sig_parts(raw)):
                        bad.append(decode_event(raw).id)   # forged copies are not content-invalid
                continue
        except RuleViolation:
            continue
        raws.append(e.raw)
    return raws


def _sig_parts(raw: bytes) -> tuple[str, bytes, bytes]:
    e = decode_event(raw)
    return e.author, e.sig, e.signing_bytes


def _views(ledger: Ledger) -> dict[str, Any]:
    return {v.id: v.to_json() for v in ledger.auctions()}


def _feed(raws: list[bytes]) -> Ledger:
    ledger = Ledger(NET)
    for raw in raws:
        out = ledger.receive_raw(raw)
        assert out.kind in set(OutcomeKind)
    return ledger


def _oracle(raws: list[bytes], ledger: Ledger) -> None:
    """Brute force from the accepted set: statuses, winners, leading and late bids."""
    events = {e.id: e for e in map(decode_event, raws) if ledger.has(e.id)}

    def past(e: Event) -> set[str]:
        seen: set[str] = set()
        stack = list(e.deps)
        while stack:
            d = stack.pop()
            if d not in seen:
                seen.add(d)
                stack.extend(events[d].deps)
        return seen

    def best(ids: list[str]) -> str | None:
        bids = [events[i] for i in ids if events[i].kind is Kind.BID]
        if not bids:
            return None
        return min(bids, key=lambda b: (-b.body.amount, b.lamport, b.id)).id  # type: ignore[union-attr]

    for view in ledger.auctions():
        mine = [e for e in events.values() if e.auction_id == view.id]
        closes = [e for e in mine if e.kind is Kind.CLOSE]
        bids = [e.id for e in mine if e.kind is Kind.BID]
        assert {b.id for b in view.bids} == set(bids)
        if not closes:
            assert view.status is Status.OPEN
            assert (view.leading.id if view.leading else None) == best(bids)
            continue
        in_past = set().union(*(past(c) for c in closes))
        assert {b.id for b in view.bids if b.late} == {b for b in bids if b not in in_past}
        assert view.closes == tuple(sorted(c.id for c in closes))
        if len(closes) == 1:
            assert view.status is Status.CLOSED
            body = closes[0].body
            assert isinstance(body, CloseBody)
            assert body.winner == best(list(past(closes[0])))
            assert (view.winner.id if view.winner else None) == body.winner
        else:
            assert view.status is Status.DISPUTED and view.winner is None
    for e in events.values():   # every accepted bid obeys the rules against its causal past
        if isinstance(e.body, BidBody):
            assert not any(events[d].kind is Kind.CLOSE for d in past(e))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(workloads(), st.data())
def test_every_permutation_and_duplication_gives_the_same_state(raws: list[bytes], data: st.DataObject) -> None:
    reference = _feed(raws)
    assert reference.counters.pending == 0
    _oracle(raws, reference)
    order = data.draw(st.permutations(raws))
    dups = data.draw(st.lists(st.sampled_from(raws), max_size=len(raws)))
    shuffled = list(order)
    rng = random.Random(data.draw(st.integers(0, 1000)))
    for d in dups:
        shuffled.insert(rng.randrange(len(shuffled) + 1), d)
    other = _feed(shuffled)
    assert other.digest_hex == reference.digest_hex
    assert len(other) == len(reference)
    assert _views(other) == _views(reference)
    assert other.counters.pending == 0
    for aid in reference.auction_ids():
        assert other.heads(aid) == reference.heads(aid)


def test_generator_reaches_the_interesting_cases() -> None:
    """The workloads do contain disputes, late bids and each kind of rejection (else the
    property above would prove little)."""
    seen: dict[str, int] = {"disputed": 0, "late": 0, "rejected": 0, "invalid_dep": 0, "bad_signature": 0}
    for seed in range(30):
        ledger = _feed(generate(seed, 28))
        seen["disputed"] += any(v.status is Status.DISPUTED for v in ledger.auctions())
        seen["late"] += any(v.late_bids for v in ledger.auctions())
        seen["rejected"] += bool(ledger.counters.rejected)
        seen["invalid_dep"] += "invalid_dep" in ledger.counters.rejected
        seen["bad_signature"] += "bad_signature" in ledger.counters.rejected
    assert all(seen.values()), seen


def _replica_state(replica: Any) -> dict[str, Any]:
    """What a node shows and what it saved: digest, views, heads, and the saved derived state."""
    ledger = replica.ledger
    store = replica.store
    return {"digest": ledger.digest_hex, "len": len(ledger), "views": _views(ledger),
            "heads": {aid: ledger.heads(aid) for aid in ledger.auction_ids()},
            "saved": store.load_derived(), "saved_auctions": list(store.auction_states()),
            "history": store.history(None, None), "stats": store.stats(None, None)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(workloads(), st.data())
def test_any_interleaving_of_events_batches_and_restarts_gives_the_same_saved_state(
        raws: list[bytes], data: st.DataObject) -> None:
    """A node that restarts from its store (losing its pending buffer, which peers re-send) and
    groups events into batches ends with the same state AND the same saved derived state and
    analytics as one that took the events one by one and never restarted."""
    from p2pauction.state.replica import Replica
    from p2pauction.state.store import MemoryStore

    reference = Replica(NET, MemoryStore(), verifier=_VERIFIER)
    for raw in raws:
        reference.receive_raw(raw)
    order = data.draw(st.permutations(raws))
    store = MemoryStore()
    node = Replica(NET, store, verifier=_VERIFIER)
    i = 0
    while i < len(order):
        step = data.draw(st.sampled_from(["one", "batch", "restart"]))
        if step == "restart":
            node = Replica(NET, store, verifier=_VERIFIER)
            continue
        size = 1 if step == "one" else data.draw(st.integers(1, 8))
        with node.batch():
            for raw in order[i:i + size]:
                node.receive_raw(raw)
        i += size
    for raw in raws:     # what a restart dropped from the pending buffer comes again (anti-entropy)
        node.receive_raw(raw)
    assert _replica_state(node) == _replica_state(reference)
    assert node.ledger.counters.pending == 0


def _working_set_state(replica: Any, raws: list[bytes]) -> dict[str, Any]:
    """What the working set could get wrong beyond _replica_state: lookups of evicted events,
    name claims, the status counts and the id list the gossip core loads."""
    ledger = replica.ledger
    ids = [decode_event(raw).id for raw in raws]
    return {**_replica_state(replica), "has": [ledger.has(i) for i in ids],
            "lamports": [ledger.lamport_of(i) if ledger.has(i) else None for i in ids],
            "claims": [ledger.claimed_name(a.identity.public_hex) for a in AUTHORS],
            "counts": ledger.status_counts(), "ids": sorted(ledger.ids_in_order())}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(workloads(), st.data())
def test_any_interleaving_of_events_evictions_and_restarts_gives_the_state_of_a_node_that_never_evicts(
        raws: list[bytes], data: st.DataObject) -> None:
    """A node keeping a working set of 0-2 finished auctions (evicted at every commit beyond
    that, read back from its store, SQLite or memory, when an event or a view needs them) and
    restarting without replay ends with the same state, digest, saved state and analytics as a
    node that keeps everything in memory and never restarts."""
    import tempfile
    from pathlib import Path

    from p2pauction.state.replica import Replica
    from p2pauction.state.store import MemoryStore, SqliteStore

    reference = Replica(NET, MemoryStore(), verifier=_VERIFIER, cache_auctions=None)
    for raw in raws:
        reference.receive_raw(raw)
    cache = data.draw(st.integers(0, 2), label="cache")
    order = data.draw(st.permutations(raws))
    with tempfile.TemporaryDirectory() as d:
        memory = MemoryStore() if data.draw(st.booleans(), label="memory store") else None

        def start() -> Any:
            store = memory if memory is not None else SqliteStore(Path(d) / "store.db")
            return Replica(NET, store, verifier=_VERIFIER, cache_auctions=cache)

        node = start()
        i = 0
        while i < len(order):
            step = data.draw(st.sampled_from(["one", "batch", "restart", "look"]))
            if step == "restart":
                node.store.close()
                node = start()
                continue
            if step == "look":   # a view or a lookup reads an evicted auction back
                event = decode_event(data.draw(st.sampled_from(order[:i + 1])))
                if node.ledger.has(event.id):
                    node.ledger.lamport_of(event.id)
                    assert node.ledger.auction(event.auction_id).id == event.auction_id
                continue
            size = 1 if step == "one" else data.draw(st.integers(1, 8))
            with node.batch():
                for raw in order[i:i + size]:
                    node.receive_raw(raw)
            assert node.ledger.working_set().evictable <= cache + 1
            i += size
        for raw in raws:     # what a restart dropped from the pending buffer comes again
            node.receive_raw(raw)
        assert node.ledger.counters.pending == 0
        assert _working_set_state(node, raws) == _working_set_state(reference, raws)
        restarted = start()
        assert _working_set_state(restarted, raws) == _working_set_state(reference, raws)
        assert restarted.ledger.working_set().auctions <= len(raws)
        node.store.close()


def test_an_event_read_back_from_the_store_equals_the_decoded_one() -> None:
    """decode_stored (evicted auctions read back, no form checks) gives the very Event that
    decode_event gave before the bytes were stored, for every kind and optional field."""
    from p2pauction.errors import DecodeError
    from p2pauction.state.events import decode_stored

    checked = 0
    for seed in range(10):
        for raw in generate(seed, 30):
            try:
                event = decode_event(raw)
            except DecodeError:
                continue   # never stored
            assert decode_stored(raw, event.id) == event
            checked += 1
    assert checked > 100
