"""Issue 11, gossip core: dependency-aware catch-up (WANTA), paced serving and pushes, frame caps
before the handshake, the per-peer byte budget, the frame deadline, and internal errors reported.

Each test drives one real GossipCore frame by frame (``tests/gossip_wire.py``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.messages import Sync
from p2pauction.state.authoring import Author
from p2pauction.state.identity import Identity
from tests.gossip_wire import NET, RawPeer, identity, make_core


def _chain(core: GossipCore, n: int) -> list[Any]:
    """An auction opened by a stranger and ``n`` bids by another, each on the previous one,
    published through ``core``; returns the events in order."""
    seller = Author(Identity.generate(b"\x51" * 32), NET)
    bidder = Author(Identity.generate(b"\x52" * 32), NET)
    ledger = core.replica.ledger
    events = [seller.open(ledger, item="chain", start_price=Decimal(1), wall_ms=1_000)]
    core.publish(events[0], now=0.0)
    for i in range(n):
        ev = bidder.bid(ledger, events[0].id, Decimal(2) + i, wall_ms=2_000 + i)
        assert core.publish(ev, now=0.0).kind == "accepted"
        events.append(ev)
    return events


def _served(peer: RawPeer) -> list[str]:
    """The event ids the core sent the peer (EVENTS and EVENT frames), in order."""
    from p2pauction.state.events import decode_event

    ids: list[str] = []
    for m in peer.inbox:
        texts = m["es"] if m["t"] == "events" else [m["e"]] if m["t"] == "event" else []
        ids += [decode_event(t.encode()).id for t in texts]
    return ids


# --- WANTA: the missing ancestors, walked back in bounded batches ---------------------------------

def test_wanta_serves_the_ids_and_their_ancestors_in_causal_order() -> None:
    core = make_core(1, fetch_ancestors=300)
    events = _chain(core, 400)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.inbox.clear()
    tip = events[-1].id
    peer.send({"t": "wanta", "ids": [tip]})
    for k in range(1, 40):  # paced: the rest leaves on the next serve ticks
        core.tick(0.05 * k)
        peer.collect()
    got = _served(peer)
    assert got == [e.id for e in events[-300:]]  # the 300 nearest the tip, ancestors first
    assert not peer.closed


def test_serving_is_paced_by_bytes_per_peer() -> None:
    core = make_core(1, fetch_ancestors=512, serve_pace_bytes=20_000, serve_pace_burst=20_000)
    events = _chain(core, 600)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.inbox.clear()
    peer.send({"t": "wanta", "ids": [events[-1].id]})
    first = len(_served(peer))
    size = len(events[-1].raw)
    assert 0 < first <= 20_000 // size + 1  # one burst's worth now
    core.tick(1.0)
    peer.collect()
    later = len(_served(peer))
    assert first < later <= first + 2 * (20_000 // size) + 1  # about one second's worth more
    for k in range(2, 29):  # under the 30 s silence limit of the test peer
        core.tick(float(k))
        peer.collect()
    assert len(_served(peer)) == 512 and not peer.closed


def test_a_pending_event_makes_the_core_ask_its_sender_for_the_missing_dep_once() -> None:
    source = make_core(2)
    events = _chain(source, 3)
    core = make_core(1, fetch_interval=0.25, fetch_timeout=3.0)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.inbox.clear()
    peer.send({"t": "event", "e": events[-1].raw.decode(), "h": 1})   # its dep (bid 2) is unknown
    assert core.replica.ledger.is_pending(events[-1].id)
    asked: list[list[str]] = []
    for k in range(1, 12):  # 2.75 s: under the timeout, the id is asked once only
        core.tick(0.25 * k)
        asked += [m["ids"] for m in peer.collect() if m["t"] == "wanta"]
    assert asked == [[events[-2].id]]
    core.tick(3.5)
    again = [m["ids"] for m in peer.collect() if m["t"] == "wanta"]
    assert again == [[events[-2].id]]  # unanswered: asked again after the timeout
    # the answer (the dep and its ancestors) releases the pending event
    peer.send({"t": "events", "es": [e.raw.decode() for e in events[:-1]]}, now=3.6)
    assert core.replica.ledger.has(events[-1].id)
    core.tick(4.0)
    assert not [m for m in peer.collect() if m["t"] == "wanta"]


def test_a_burst_of_new_events_over_the_push_budget_is_announced_instead() -> None:
    core = make_core(1, push_rate_bytes=1_000, push_burst_bytes=10_000)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.inbox.clear()
    events = _chain(core, 200)
    core.tick(1.0)
    peer.collect()
    pushed = [m for m in peer.inbox if m["t"] == "event"]
    announced = sum(len(m["ids"]) for m in peer.inbox if m["t"] == "ihave")
    assert 0 < len(pushed) <= 10_000 // len(events[-1].raw) + 1
    assert len(pushed) + announced == len(events)
    assert core.stats()["events"]["push_deferred"] == announced


# --- frame caps, byte budget, frame deadline ------------------------------------------------------

def test_before_the_handshake_only_handshake_sized_frames_are_read() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send_bytes((100_000).to_bytes(4, "big") + b"{" * 1000)   # legal size after the handshake
    assert peer.closed is not None and "over the 1024-byte limit" in peer.closed
    assert (link := core.links.get(5)) is None or link.decoder.buffered == 0


def test_after_the_handshake_full_size_frames_are_read() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    replies = peer.send({"t": "ping", "n": 3, "pad": "x" * 200_000})
    assert {"t": "pong", "n": 3} in replies and peer.closed is None


def test_large_valid_frames_are_budgeted_per_peer() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    big = {"t": "ping", "n": 1, "pad": "x" * (1_000_000)}
    pongs = 0
    for _ in range(40):  # 40 MiB at once: far over an honest peer's rate
        pongs += sum(1 for m in peer.send_bytes(peer.sealed(big)) if m["t"] == "pong")
        if peer.closed:
            break
    assert peer.closed is not None and "rate limit exceeded (bytes)" in peer.closed
    assert pongs <= 9  # the 8 MiB burst, not 40 frames, was parsed


def test_a_frame_must_complete_within_the_deadline() -> None:
    core = make_core(1, frame_timeout=20.0)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.send_bytes((500).to_bytes(4, "big") + b"{")
    t = 0.0
    while peer.closed is None and t < 120.0:  # slowloris: one byte every 9 s
        t += 9.0
        peer.send_bytes(b" ", now=t)
        core.tick(t)
        peer.collect()
    assert peer.closed is not None and "frame not completed within 20 s" in peer.closed
    assert t <= 30.0
    assert core.stats()["links"]["frame_timeouts"] == 1


def test_complete_frames_spread_over_time_are_not_cut() -> None:
    core = make_core(1, frame_timeout=20.0)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    for k in range(1, 20):
        frame = peer.sealed({"t": "ping", "n": 1})  # each frame split in two, 5 s apart; 95 s in all
        peer.send_bytes(frame[:3], now=10.0 * k)
        core.tick(10.0 * k + 4.0)
        peer.send_bytes(frame[3:], now=10.0 * k + 5.0)
        core.tick(10.0 * k + 5.0)
        peer.collect()
    assert peer.closed is None


# --- a bug in a handler is reported --------------------------------------------------------------

def test_an_exception_in_a_handler_is_reported_and_closes_only_that_link(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: GossipCore, link: Any, msg: Any, now: float) -> None:
        raise RuntimeError("planted bug")

    monkeypatch.setitem(GossipCore._HANDLERS, Sync, broken)
    core = make_core(1)
    reports: list[str] = []
    core.on_internal_error = reports.append
    peer = RawPeer(core, 5, identity(9))
    other = RawPeer(core, 6, identity(8), remote="10.9.9.8:5000")
    peer.handshake()
    other.handshake()
    peer.send({"t": "sync", "r": "0" * 24})
    assert peer.closed == "internal error" and other.closed is None
    assert len(reports) == 1 and "handling sync: RuntimeError: planted bug" in reports[0]
    assert core.stats()["links"]["internal_errors"] == 1


def test_wanta_walk_stops_at_the_events_the_asker_holds() -> None:
    from p2pauction.gossip.antientropy import HeldFilter

    core = make_core(1)
    events = _chain(core, 60)
    held = HeldFilter.of([events[30].id], 64)
    assert events[30].id in held and sum(e.id in held for e in events) <= 3
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.inbox.clear()
    peer.send({"t": "wanta", "ids": [events[-1].id], "h": held.to_hex()})
    got = _served(peer)
    assert got == [e.id for e in events[31:]]  # back to the held event, not beyond


def test_a_malformed_wanta_is_a_protocol_violation() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.send({"t": "wanta", "ids": ["ab" * 32], "h": "xyz"})
    assert peer.closed is not None and "protocol violation" in peer.closed


def test_nothing_is_served_or_pushed_while_the_driver_holds_a_backlog_for_the_peer() -> None:
    core = make_core(1)
    events = _chain(core, 30)
    backlog = {"bytes": 2 * 2**20}
    core.send_backlog = lambda conn: backlog["bytes"]
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    peer.inbox.clear()
    peer.send({"t": "wanta", "ids": [events[-1].id]})
    core.tick(0.1)
    peer.collect()
    assert _served(peer) == []            # the peer has not read what it was sent yet
    backlog["bytes"] = 0
    core.tick(0.2)
    peer.collect()
    assert _served(peer) == [e.id for e in events]
    # a peer that reads nothing for the whole patience is not reading: sending resumes (the
    # transport then drops it when its queue overflows)
    backlog["bytes"] = 2 * 2**20
    peer.inbox.clear()
    peer.send({"t": "wanta", "ids": [events[-1].id]}, now=1.0)
    core.tick(5.0)
    peer.collect()
    assert _served(peer) == []
    core.tick(11.5)
    peer.collect()
    assert _served(peer) == [e.id for e in events]
