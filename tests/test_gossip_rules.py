"""One test per protocol rule of the gossip core, through its public inputs and outputs only.

Every test drives a ``GossipCore`` as a driver would (``connection_made``, ``data_received``,
``connection_lost``, ``dial_failed``, ``tick(now)``) and looks only at what comes out
(``take_actions()``: the frames sent on each connection, dials, closes) and at ``active_keys()``
and ``peers()``; nothing here reads a private attribute, so the tests outlive a refactor of the
core's insides. ``benchmarks/mutants.py`` breaks each rule in a copy of the tree and checks that
the test named for it fails: the rules listed in docs/protocol.md are pinned, not just exercised.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any, Protocol

import pytest

from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.actions import Accepted, Action, CloseConn, Dial, Send
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.discovery import DiscoveryCore
from p2pauction.gossip.framing import FrameDecoder, decode_body, encode_body, encode_frame
from p2pauction.gossip.messages import Message
from p2pauction.gossip.secure import LocalIdentity, SecureSession, SessionState
from p2pauction.state.authoring import Author
from p2pauction.state.events import decode_event
from p2pauction.state.identity import Identity
from p2pauction.state.ledger import Ledger
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore
from tests.gossip_wire import NET, identity, make_core

Frame = dict[str, Any]
# Timers that would otherwise add traffic to a test of another rule: off (or far away).
QUIET: dict[str, Any] = {"anti_entropy": False, "shuffle_interval": 1e9, "refresh_interval": 0.0}


# --- a hand driver: cores on numbered connections, every frame recorded ------------------------------

class Driven(Protocol):
    """The driver-facing inputs and outputs of a sans-IO core (node or discovery)."""

    def connection_made(self, conn: int, *, outbound: bool, remote_addr: str, now: float) -> None: ...
    def data_received(self, conn: int, data: bytes, now: float) -> None: ...
    def connection_lost(self, conn: int, now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def take_actions(self) -> list[Action]: ...
    sent_tap: Any


class Wires:
    """Cores joined by hand-made connections. ``pump`` delivers every Send to the other end of its
    connection until nothing moves; every frame and close is recorded per (core, conn)."""

    def __init__(self) -> None:
        self._other: dict[tuple[int, int], tuple[Driven, int]] = {}
        self._decoders: dict[tuple[int, int], FrameDecoder] = {}
        self.cores: list[Driven] = []
        self.sent: dict[tuple[int, int], list[Frame]] = {}
        self.closed: dict[tuple[int, int], str] = {}
        self.dials: list[tuple[Driven, str]] = []
        self.accepted: dict[int, list[str]] = {}  # id(core) -> accepted event ids

    def _add(self, core: Driven) -> None:
        if all(c is not core for c in self.cores):
            self.cores.append(core)
            end_of = id(core)

            def record(conn: int, msg: Message) -> None:   # frames are encrypted: record messages
                self.sent.setdefault((end_of, conn), []).append(msg.to_wire())
            core.sent_tap = record

    def connect(self, dialer: Driven, d_conn: int, acceptor: Driven, a_conn: int, now: float, *,
                dialer_ip: str = "10.0.0.99", acceptor_addr: str = "10.0.0.98:7000") -> None:
        """``dialer`` dials ``acceptor``: both learn of the connection (no pumping)."""
        self._add(dialer)
        self._add(acceptor)
        self._other[(id(dialer), d_conn)] = (acceptor, a_conn)
        self._other[(id(acceptor), a_conn)] = (dialer, d_conn)
        dialer.connection_made(d_conn, outbound=True, remote_addr=acceptor_addr, now=now)
        acceptor.connection_made(a_conn, outbound=False, remote_addr=f"{dialer_ip}:{40000 + d_conn}", now=now)

    def frames(self, core: Driven, conn: int, t: str | None = None) -> list[Frame]:
        """Frames ``core`` sent on ``conn`` (of type ``t``)."""
        return [f for f in self.sent.get((id(core), conn), []) if t is None or f["t"] == t]

    def pump(self, now: float) -> None:
        for _ in range(1000):
            moved = False
            for core in self.cores:
                for action in core.take_actions():
                    moved = True
                    self._route(core, action, now)
            if not moved:
                return
        raise AssertionError("the cores never went quiet")

    def _route(self, core: Driven, action: Action, now: float) -> None:
        if isinstance(action, Dial):
            self.dials.append((core, action.addr))
            return
        if isinstance(action, Accepted):
            self.accepted.setdefault(id(core), []).append(action.event.id)
            return
        if not isinstance(action, (Send, CloseConn)):
            return
        end = (id(core), action.conn)
        if end in self.closed:
            return
        other = self._other.get(end)
        if isinstance(action, Send):
            if other is not None and (id(other[0]), other[1]) not in self.closed:
                other[0].data_received(other[1], action.data, now)
            return
        self.closed[end] = action.reason
        core.connection_lost(action.conn, now)
        if other is not None and (id(other[0]), other[1]) not in self.closed:
            self.closed[(id(other[0]), other[1])] = "lost"
            other[0].connection_lost(other[1], now)

    def run(self, start: float, end: float, step: float = 0.25) -> float:
        """Tick every core each ``step`` seconds from ``start`` to ``end``, pumping in between."""
        now = start
        while now < end - 1e-9:
            now = min(end, now + step)
            for core in self.cores:
                core.tick(now)
            self.pump(now)
        return now


class Peer:
    """A hand-driven remote node on one connection of ``core`` (inbound, unless ``dialed_as``
    names the address the core dialed); it runs a real Noise handshake (by itself unless
    ``handshake_now`` is False), then speaks encrypted frames."""

    def __init__(self, host: Host, conn: int, ident: Any, *, ip: str = "10.9.9.9", now: float = 0.0,
                 addr: str | None = None, handshake_now: bool = True, role: str = "node",
                 dialed_as: str | None = None) -> None:
        self.host, self.conn, self.ident = host, conn, ident
        self.key: str = ident.public_hex
        self.inbox: list[Frame] = []
        self.closed: str | None = None
        self.addr = addr
        self.role = role
        self._decoder = FrameDecoder()
        self._handshake_in: list[bytes] = []
        entropy = SeededEntropy(b"peer" + bytes.fromhex(self.key) + conn.to_bytes(4, "big"))
        self.session = SecureSession(LocalIdentity.create(ident, entropy), initiator=dialed_as is None,
                                     net=NET, addr=addr, randbytes=entropy, role=role)
        host.peers[conn] = self
        if dialed_as is None:
            host.core.connection_made(conn, outbound=False, remote_addr=f"{ip}:{5000 + conn}", now=now)
        else:
            host.core.connection_made(conn, outbound=True, remote_addr=dialed_as, now=now)
        host.drain()
        if handshake_now:
            self.handshake(now)

    def handshake(self, now: float = 0.0) -> None:
        if self.session.initiator:
            self._send_body(self.session.start(), now)
        else:
            self._step(now)

    def _step(self, now: float) -> None:
        """Answer the handshake message received, if any."""
        while self._handshake_in and not self.session.established and self.closed is None:
            reply = self.session.receive_handshake(self._handshake_in.pop(0))
            if reply is not None:
                self._send_body(reply, now)

    def receive(self, data: bytes) -> None:
        if self.closed is not None:
            return
        for body in self._decoder.split(data):
            if body.startswith(b'{"t":"error"') and not self.inbox:
                self.inbox.append(decode_body(body))   # refused (in plaintext, before the channel)
            elif self.session.established:
                self.inbox.append(decode_body(self.session.decrypt(body)))
            else:
                self._handshake_in.append(body)
                if self.session.initiator or self.session.state is not SessionState.AWAIT_MSG1:
                    self._step(self.host.now)

    def _send_body(self, body: bytes, now: float) -> None:
        self.send_bytes(len(body).to_bytes(4, "big") + body, now)

    def send_bytes(self, data: bytes, now: float = 0.0) -> None:
        self.host.now = now
        self.host.core.data_received(self.conn, data, now)
        self.host.drain()

    def send(self, frame: Frame, now: float = 0.0) -> None:
        self._send_body(self.session.encrypt(encode_body(frame)), now)

    def got(self, t: str) -> list[Frame]:
        return [f for f in self.inbox if f["t"] == t]

    def clear(self) -> None:
        self.inbox.clear()


class Host:
    """A core under test, driven by hand: its outputs are routed to its ``Peer``s."""

    def __init__(self, core: GossipCore) -> None:
        self.core = core
        self.peers: dict[int, Peer] = {}
        self.dials: list[str] = []
        self.accepted: list[Accepted] = []
        self.now = 0.0  # of the last input: when a close it caused is reported back

    def drain(self) -> None:
        for action in self.core.take_actions():
            if isinstance(action, Send) and action.conn in self.peers:
                self.peers[action.conn].receive(action.data)
            elif isinstance(action, CloseConn) and action.conn in self.peers:
                peer = self.peers[action.conn]
                if peer.closed is None:
                    peer.closed = action.reason
                self.core.connection_lost(action.conn, self.now)
            elif isinstance(action, Dial):
                self.dials.append(action.addr)
            elif isinstance(action, Accepted):
                self.accepted.append(action)

    def tick(self, now: float) -> None:
        self.now = now
        self.core.tick(now)
        self.drain()

    def run(self, start: float, end: float, step: float = 0.25) -> float:
        now = start
        while now < end - 1e-9:
            now = min(end, now + step)
            self.tick(now)
        return now


def host(n: int = 1, **overrides: Any) -> Host:
    return Host(make_core(n, **overrides))


def opens(n: int, who: int = 50) -> list[Any]:
    """``n`` auction openings by one author (independent events: any order is valid)."""
    author = Author(identity(who), NET)
    scratch = Ledger(NET)
    events = []
    for i in range(n):
        events.append(author.open(scratch, item=f"item {i}", start_price=Decimal(5), wall_ms=1_000 + i))
    return events


def core_holding(events: list[Any], n: int, **overrides: Any) -> GossipCore:
    store = MemoryStore()
    store.append(events)
    overrides.setdefault("exempt_ips", ())
    cfg = GossipConfig(net=NET, listen_addr=f"10.0.0.{n}:7000", **overrides)
    return GossipCore(cfg, identity(n), Replica(NET, store), random.Random(n), 0.0, entropy=SeededEntropy(n))


def text(event: Any) -> str:
    return str(event.raw.decode("utf-8"))


def event_ids(frames: list[Frame]) -> list[str]:
    """Ids of the events carried by EVENT / EVENTS frames, in order."""
    out = []
    for f in frames:
        texts = [f["e"]] if f["t"] == "event" else f.get("es", []) if f["t"] == "events" else []
        out += [decode_event(t.encode("utf-8")).id for t in texts]
    return out


# --- links: the duplicate-connection tie rule ---------------------------------------------------------

def _kept(core: GossipCore) -> dict[str, Any]:
    """The one peer link ``core`` keeps, as ``peers()`` describes it."""
    (peer,) = core.peers()
    return peer


@pytest.mark.parametrize("first", ["smaller", "larger", "crossed"])
def test_crossed_dials_keep_the_link_dialed_by_the_smaller_key(first: str) -> None:
    """Two nodes dial each other: both ends keep the one connection the smaller key dialed,
    whichever handshake completes first (docs/protocol.md, Handshake)."""
    a, b = make_core(1), make_core(2)
    small, large = (a, b) if a.key < b.key else (b, a)
    w = Wires()
    if first == "crossed":  # both dials in flight before either handshake completes
        w.connect(small, 1, large, 2, 0.0)
        w.connect(large, 3, small, 4, 0.0)
        w.pump(0.0)
    else:
        order = [(small, 1, large, 2), (large, 3, small, 4)]
        for dialer, dc, acceptor, ac in order if first == "smaller" else order[::-1]:
            w.connect(dialer, dc, acceptor, ac, 0.0)
            w.pump(0.0)
    assert small.active_keys() == [large.key] and large.active_keys() == [small.key]
    assert _kept(small)["outbound"] is True and _kept(large)["outbound"] is False
    # The connection the larger key dialed is the one closed, at both of its ends.
    assert (id(large), 3) in w.closed and (id(small), 4) in w.closed
    assert (id(small), 1) not in w.closed and (id(large), 2) not in w.closed
    assert any("duplicate" in r for r in w.closed.values())


@pytest.mark.parametrize("redialer", ["smaller", "larger"])
def test_a_reconnect_replaces_the_old_link(redialer: str) -> None:
    """The same side dials again while its old link is up (it thinks the old one dead): the newer
    connection is kept at both ends, whichever key dialed."""
    a, b = make_core(1), make_core(2)
    small, large = (a, b) if a.key < b.key else (b, a)
    dialer, acceptor = (small, large) if redialer == "smaller" else (large, small)
    w = Wires()
    w.connect(dialer, 1, acceptor, 2, 0.0)
    w.pump(0.0)
    w.connect(dialer, 5, acceptor, 6, 1.0)
    w.pump(1.0)
    assert dialer.active_keys() == [acceptor.key] and acceptor.active_keys() == [dialer.key]
    assert (id(dialer), 1) in w.closed and (id(acceptor), 2) in w.closed
    assert (id(dialer), 5) not in w.closed and (id(acceptor), 6) not in w.closed
    assert _kept(dialer)["since"] == 1.0 and _kept(acceptor)["since"] == 1.0


# --- links: liveness ---------------------------------------------------------------------------------

def test_idle_link_gets_one_ping_after_ping_after() -> None:
    """Nothing received for ``ping_after`` (10 s): one PING, not one per housekeeping tick."""
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    h.run(0.0, 9.75)
    assert p.got("ping") == []
    h.run(9.75, 11.5)
    assert len(p.got("ping")) == 1
    h.run(11.5, 29.0)
    assert len(p.got("ping")) == 1 and p.closed is None


def test_silent_link_is_closed_after_dead_after() -> None:
    """Nothing received for ``dead_after`` (30 s): the link is closed (with a reason)."""
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    h.run(0.0, 29.75)
    assert p.closed is None
    h.run(29.75, 31.5)
    assert p.closed is not None and "silent" in p.closed
    assert h.core.active_keys() == []


def test_answered_ping_keeps_a_link_alive_and_the_next_idle_period_pings_again() -> None:
    """Any frame received counts as life; each new idle period gets its own PING."""
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    now = 0.0
    for _ in range(6):  # 6 idle periods of ~10 s: 60 s, twice dead_after
        before = len(p.got("ping"))
        while len(p.got("ping")) == before:
            assert now < 200, "no PING in this idle period"
            now = h.run(now, now + 0.25)
        ping = p.got("ping")[-1]
        p.send({"t": "pong", "n": ping["n"]}, now)
    assert p.closed is None and h.core.active_keys() == [p.key]
    assert now >= 60.0  # twice dead_after


def test_idle_but_healthy_link_outlives_dead_after() -> None:
    """Two real cores with nothing to say keep their link alive by pinging each other."""
    a, b = make_core(1, **QUIET), make_core(2, **QUIET)
    w = Wires()
    w.connect(a, 1, b, 2, 0.0)
    w.pump(0.0)
    w.run(0.0, 100.0)
    assert a.active_keys() == [b.key] and b.active_keys() == [a.key]
    assert w.closed == {}
    # ~every 10 s one side pings (hearing the other's PING resets the listener's own idle timer)
    assert len(w.frames(a, 1, "ping")) + len(w.frames(b, 2, "ping")) >= 5
    assert len(w.frames(a, 1, "pong")) + len(w.frames(b, 2, "pong")) >= 5


def test_ping_is_answered_with_pong_of_the_same_n() -> None:
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    p.send({"t": "ping", "n": 123456789}, 1.0)
    assert p.got("pong") == [{"t": "pong", "n": 123456789}]


def test_error_frame_from_the_peer_closes_the_link() -> None:
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    p.send({"t": "error", "reason": "going away"}, 1.0)
    assert p.closed is not None and "going away" in p.closed
    assert h.core.active_keys() == []
    assert p.got("error") == []  # no ERROR is sent back for an ERROR


def test_plaintext_before_the_handshake_and_hello_after_it_are_violations() -> None:
    h = host(1, **QUIET)
    early = Peer(h, 5, identity(9), handshake_now=False)
    hello = {"t": "hello", "net": NET, "ver": 1, "key": early.key, "addr": None, "nonce": "cd" * 32,
             "role": "node"}
    early.send_bytes(encode_frame(hello))
    assert early.closed is not None and "protocol version 1" in early.closed
    late = Peer(h, 6, identity(10), ip="10.9.9.10")
    late.send(hello)   # encrypted, after the handshake: not a message type of this protocol
    assert late.closed is not None and "violation" in late.closed


def test_banned_ip_is_refused_before_the_handshake() -> None:
    """Bans are per key and per IP: a fresh key from a banned IP is refused on connecting."""
    h = host(1, **QUIET)
    for conn, who in ((5, 9), (6, 10)):  # two violations of -50 from one IP: banned at -100
        bad = Peer(h, conn, identity(who), ip="203.0.113.7")
        bad.send({"t": "sync", "r": "zz"})
        assert bad.closed is not None and "violation" in bad.closed
    fresh = Peer(h, 7, identity(11), ip="203.0.113.7", handshake_now=False)
    assert fresh.closed is not None and "banned" in fresh.closed
    assert fresh.session.state is SessionState.START  # refused before any handshake message
    other = Peer(h, 8, identity(12), ip="203.0.113.8")
    assert other.closed is None and h.core.active_keys() == [other.key]


# --- dissemination (Plumtree) as seen on the wire ------------------------------------------------------

def test_event_is_pushed_to_eager_peers_but_not_back_to_its_sender() -> None:
    h = host(1, **QUIET)
    p1, p2, p3 = (Peer(h, c, identity(8 + c)) for c in (1, 2, 3))
    (event,) = opens(1)
    p1.send({"t": "event", "e": text(event), "h": 3}, 1.0)
    assert [f["h"] for f in p2.got("event")] == [4] and [f["h"] for f in p3.got("event")] == [4]
    h.run(1.0, 3.0)
    assert p1.got("event") == [] and p1.got("ihave") == []


def test_duplicate_event_is_answered_with_one_prune() -> None:
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    (event,) = opens(1)
    p1.send({"t": "event", "e": text(event), "h": 1}, 1.0)
    assert p2.got("prune") == []
    p2.send({"t": "event", "e": text(event), "h": 1}, 1.1)
    assert p2.got("prune") == [{"t": "prune"}]
    p2.send({"t": "event", "e": text(event), "h": 1}, 1.2)
    assert len(p2.got("prune")) == 1 and p1.got("prune") == []
    # The PRUNE is one-way: p2 stops pushing to us, we still push to p2 (until p2 PRUNEs us).
    (nxt,) = opens(1, who=51)
    p1.send({"t": "event", "e": text(nxt), "h": 1}, 2.0)
    h.run(2.0, 3.0)
    assert event_ids(p2.got("event")) == [event.id, nxt.id]


def test_a_peer_that_gave_us_a_first_copy_is_not_pruned_within_prune_protect() -> None:
    """Concurrent events each PRUNE every link but their own first sender's; a peer that gave us
    a first copy within ``prune_protect`` (0.3 s) is a parent of ours for some source and is not
    PRUNEd for a duplicate, so concurrent events cannot cut the tree into a forest."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    first, second = opens(2)
    p1.send({"t": "event", "e": text(first), "h": 1}, 1.0)
    p2.send({"t": "event", "e": text(second), "h": 1}, 1.05)
    p1.send({"t": "event", "e": text(second), "h": 1}, 1.1)  # duplicate, 0.1 s after p1's first copy
    p2.send({"t": "event", "e": text(first), "h": 1}, 1.2)   # duplicate, 0.15 s after p2's
    assert p1.got("prune") == [] and p2.got("prune") == []
    (third,) = opens(1, who=52)
    p1.send({"t": "event", "e": text(third), "h": 1}, 2.0)
    p2.send({"t": "event", "e": text(third), "h": 1}, 2.5)   # p2's last first copy is 1.45 s old
    assert p2.got("prune") == [{"t": "prune"}]


def test_pruned_peer_gets_ihave_not_events_and_graft_restores_push() -> None:
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    p2.send({"t": "prune"}, 0.5)
    first, second = opens(2)
    p1.send({"t": "event", "e": text(first), "h": 1}, 1.0)
    assert p2.got("event") == []
    h.run(1.0, 1.5)
    assert [(f["ids"], f.get("hs")) for f in p2.got("ihave")] == [([first.id], [1])]
    p2.send({"t": "graft", "ids": [first.id]}, 1.6)
    assert event_ids(p2.got("event")) == [first.id]  # the grafted event is served,
    assert p2.got("event")[0]["h"] == 2  # with the hops of our copy + 1
    p1.send({"t": "event", "e": text(second), "h": 1}, 2.0)
    assert event_ids(p2.got("event")) == [first.id, second.id]  # and pushed to from now on


def test_first_copy_from_a_lazy_peer_makes_it_eager_again() -> None:
    """The peer that delivers an event first is on our tree: we push to it again."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    p2.send({"t": "prune"}, 0.5)
    mine, later = opens(1, who=60)[0], opens(1, who=61)[0]
    p2.send({"t": "event", "e": text(mine), "h": 1}, 1.0)  # first copy, from the lazy p2
    p1.send({"t": "event", "e": text(later), "h": 1}, 2.0)
    assert event_ids(p2.got("event")) == [later.id]


def test_ihave_ids_are_batched_per_interval() -> None:
    """Ids for a lazy peer wait ``ihave_interval`` (0.25 s) and go in one IHAVE, in order."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    p2.send({"t": "prune"}, 0.0)
    events = opens(5)
    for i, event in enumerate(events):
        p1.send({"t": "event", "e": text(event), "h": 1}, 1.0 + 0.02 * i)
        h.tick(1.0 + 0.02 * i)
    assert p2.got("ihave") == []
    h.tick(1.25)
    assert [f["ids"] for f in p2.got("ihave")] == [[e.id for e in events]]


@pytest.mark.parametrize("announced", ["before our copy", "while our IHAVE waits"])
def test_no_ihave_to_a_peer_that_announced_the_id_to_us(announced: str) -> None:
    """A lazy peer that sent us an IHAVE for an id holds that event: we never announce it back,
    whether its IHAVE came before our copy or while our own IHAVE waited for the batch."""
    h = host(1, **QUIET)
    p1, p2, p3 = (Peer(h, c, identity(8 + c)) for c in (1, 2, 3))
    p2.send({"t": "prune"}, 0.5)
    p3.send({"t": "prune"}, 0.5)
    (event,) = opens(1)
    if announced == "before our copy":
        p2.send({"t": "ihave", "ids": [event.id], "hs": [1]}, 0.9)
    p1.send({"t": "event", "e": text(event), "h": 1}, 1.0)
    if announced == "while our IHAVE waits":
        p2.send({"t": "ihave", "ids": [event.id], "hs": [1]}, 1.1)
    h.run(1.0, 2.0)
    assert [i for f in p3.got("ihave") for i in f["ids"]] == [event.id]
    assert p2.got("ihave") == []


def test_an_id_plumtree_is_fetching_is_not_wanted_by_anti_entropy() -> None:
    """An id announced to us (its GRAFT timer runs) or GRAFTed (answer due within
    ``graft_retry``) is not WANTed again by anti-entropy; once the GRAFT is overdue it is."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    missing = "ef" * 32
    ids = {"t": "ids", "l": [[missing[:4], [missing]]]}
    p1.send({"t": "ihave", "ids": [missing]}, 10.0)
    p2.send(ids, 10.5)
    assert p2.got("want") == []  # announced: the GRAFT timer runs
    h.run(10.0, 11.0, step=0.125)
    assert p1.got("graft") == [{"t": "graft", "ids": [missing]}]
    p2.send(ids, 11.25)
    assert p2.got("want") == []  # grafted: the answer is due within graft_retry (0.5 s)
    h.run(11.0, 11.75, step=0.125)
    p2.send(ids, 11.75)
    assert [f["ids"] for f in p2.got("want")] == [[missing]]  # the GRAFT went unanswered


def test_a_link_added_once_the_tree_formed_starts_lazy() -> None:
    """Before any push arrived every new link is eager (the first events build the tree); a
    link added later starts lazy (IHAVE only), so it closes no cycle in the tree."""
    h = host(1, **QUIET)
    p1 = Peer(h, 1, identity(9))
    first, second = opens(2)
    p1.send({"t": "event", "e": text(first), "h": 1}, 1.0)
    p2 = Peer(h, 2, identity(10), now=2.0)
    p1.send({"t": "event", "e": text(second), "h": 1}, 3.0)
    h.run(3.0, 4.0)
    assert p2.got("event") == []
    assert [i for f in p2.got("ihave") for i in f["ids"]] == [second.id]


def test_a_link_added_while_there_is_no_eager_peer_starts_eager() -> None:
    h = host(1, **QUIET)
    p1 = Peer(h, 1, identity(9))
    first, second = opens(2)
    p1.send({"t": "event", "e": text(first), "h": 1}, 1.0)
    h.core.connection_lost(1, 1.5)
    p2 = Peer(h, 2, identity(10), now=2.0)
    h.core.publish(second, 3.0)
    h.drain()
    assert event_ids(p2.got("event")) == [second.id]


def test_missing_ihave_id_is_grafted_after_the_timeout_not_before() -> None:
    """An IHAVE id we lack waits ``graft_timeout`` (1 s) for the push, then GRAFTs the first
    announcer; another announcer is tried ``graft_retry`` (0.5 s) later."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    missing = "ab" * 32
    p1.send({"t": "ihave", "ids": [missing]}, 10.0)
    p2.send({"t": "ihave", "ids": [missing]}, 10.125)
    h.run(10.0, 10.875, step=0.125)
    assert p1.got("graft") == [] and p2.got("graft") == []
    h.run(10.875, 11.0, step=0.125)
    assert p1.got("graft") == [{"t": "graft", "ids": [missing]}] and p2.got("graft") == []
    h.run(11.0, 11.375, step=0.125)
    assert p2.got("graft") == []
    h.run(11.375, 11.5, step=0.125)
    assert p2.got("graft") == [{"t": "graft", "ids": [missing]}]
    h.run(11.5, 20.0)
    assert len(p1.got("graft")) == 1 and len(p2.got("graft")) == 1


def test_graft_skips_an_announcer_that_disconnected() -> None:
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    missing = "cd" * 32
    p1.send({"t": "ihave", "ids": [missing]}, 10.0)
    p2.send({"t": "ihave", "ids": [missing]}, 10.125)
    h.core.connection_lost(1, 10.5)
    h.run(10.0, 11.0, step=0.125)
    assert p2.got("graft") == [{"t": "graft", "ids": [missing]}]  # at once, not a retry later


def test_no_graft_when_the_event_arrives_before_the_timeout() -> None:
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    (event,) = opens(1)
    p2.send({"t": "ihave", "ids": [event.id]}, 1.0)
    p1.send({"t": "event", "e": text(event), "h": 1}, 1.5)
    h.run(1.0, 5.0)
    assert p2.got("graft") == []


def _bid_waiting_for_its_auction() -> tuple[Any, Any]:
    seller, bidder = Author(identity(70), NET), Author(identity(71), NET)
    scratch = Ledger(NET)
    auction = seller.open(scratch, item="Pic", start_price=Decimal(10), wall_ms=1_000)
    assert scratch.receive(auction).kind == "accepted"
    bid = bidder.bid(scratch, auction.id, Decimal(20), wall_ms=2_000)
    return auction, bid


def test_pending_event_is_neither_wanted_nor_grafted_again() -> None:
    """An event the ledger parks (its auction is not here yet) is held: asking for it again
    by GRAFT or WANT would be wasted."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    _, bid = _bid_waiting_for_its_auction()
    p2.send({"t": "ihave", "ids": [bid.id]}, 1.0)
    p1.send({"t": "event", "e": text(bid), "h": 1}, 1.2)
    assert h.accepted == []  # parked, not accepted
    h.run(1.2, 4.0)
    assert p2.got("graft") == []
    p2.send({"t": "ids", "l": [[bid.id[:4], [bid.id]]]}, 4.0)
    assert p2.got("want") == []


def test_a_pending_event_is_forwarded_only_once_released() -> None:
    """An event parked for a missing dependency is not passed on; when the dependency arrives
    both are accepted and both are pushed, dependency first."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    auction, bid = _bid_waiting_for_its_auction()
    p1.send({"t": "event", "e": text(bid), "h": 1}, 1.0)
    assert p2.got("event") == [] and h.accepted == []
    p1.send({"t": "event", "e": text(auction), "h": 1}, 2.0)
    assert [a.event.id for a in h.accepted] == [auction.id, bid.id]
    assert event_ids(p2.got("event")) == [auction.id, bid.id]


def test_tree_reroots_at_most_once_per_cooldown() -> None:
    """A lazy peer much closer to the source than our copy: GRAFT it, PRUNE the long path; but at
    most once per ``optimize_cooldown`` (1 s), so concurrent sources cannot make the tree flap."""
    h = host(1, optimize_threshold=2, optimize_samples=1, **QUIET)
    p1, p2, p3 = (Peer(h, c, identity(8 + c)) for c in (1, 2, 3))
    p2.send({"t": "prune"}, 0.0)
    p3.send({"t": "prune"}, 0.0)
    e1, e2, e3 = opens(3)
    p1.send({"t": "event", "e": text(e1), "h": 10}, 5.0)
    p2.send({"t": "ihave", "ids": [e1.id], "hs": [1]}, 5.1)
    assert p2.got("graft") == [{"t": "graft", "ids": []}] and p1.got("prune") == [{"t": "prune"}]
    # p2 is now our tree parent; a second shortcut within the cooldown is not taken.
    p2.send({"t": "event", "e": text(e2), "h": 10}, 5.2)
    p3.send({"t": "ihave", "ids": [e2.id], "hs": [1]}, 5.3)
    assert p3.got("graft") == [] and p2.got("prune") == []
    p2.send({"t": "event", "e": text(e3), "h": 10}, 6.5)
    p3.send({"t": "ihave", "ids": [e3.id], "hs": [1]}, 6.6)
    assert p3.got("graft") == [{"t": "graft", "ids": []}] and p2.got("prune") == [{"t": "prune"}]


@pytest.mark.parametrize(("our_hops", "rerooted"), [(4, True), (3, False)])
def test_tree_reroots_only_for_a_gain_of_the_threshold(our_hops: int, rerooted: bool) -> None:
    """Re-root when the announcer's hops + 1 + ``optimize_threshold`` (2) <= our copy's hops."""
    h = host(1, optimize_threshold=2, optimize_samples=1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    p2.send({"t": "prune"}, 0.0)
    (event,) = opens(1)
    p1.send({"t": "event", "e": text(event), "h": our_hops}, 5.0)
    p2.send({"t": "ihave", "ids": [event.id], "hs": [1]}, 5.1)
    assert (p2.got("graft") == [{"t": "graft", "ids": []}]) is rerooted
    assert (p1.got("prune") == [{"t": "prune"}]) is rerooted


@pytest.mark.parametrize(("second_gain", "rerooted"), [(0, True), (-1, False)])
def test_tree_reroots_on_the_mean_gain_over_optimize_samples(second_gain: int, rerooted: bool) -> None:
    """With concurrent sources one event's shortcut says little: the hops a lazy announcer
    saves are averaged over ``optimize_samples`` events (each counted at most 4 hops) and the
    tree re-routes when the mean reaches ``optimize_threshold`` (2)."""
    h = host(1, optimize_threshold=2, optimize_samples=2, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    p2.send({"t": "prune"}, 0.0)
    e1, e2 = opens(2)
    p1.send({"t": "event", "e": text(e1), "h": 12}, 5.0)
    p2.send({"t": "ihave", "ids": [e1.id], "hs": [1]}, 5.1)   # saves 10 hops, counted as 4
    assert p2.got("graft") == [] and p1.got("prune") == []    # one sample is not enough
    p1.send({"t": "event", "e": text(e2), "h": 6}, 5.2)
    p2.send({"t": "ihave", "ids": [e2.id], "hs": [5 - second_gain]}, 5.3)
    assert (p2.got("graft") == [{"t": "graft", "ids": []}]) is rerooted
    assert (p1.got("prune") == [{"t": "prune"}]) is rerooted


# --- anti-entropy --------------------------------------------------------------------------------------

AE_ONLY: dict[str, Any] = {"dissemination": "none", "shuffle_interval": 1e9, "refresh_interval": 0.0, "ae_interval": 1000.0}


def test_first_peer_starts_a_round_within_the_followup_delay() -> None:
    """A node's first peer (after start or isolation) triggers a round at once, not in 10 s."""
    events = opens(5)
    a, b = core_holding([], 1, **AE_ONLY), core_holding(events, 2, **AE_ONLY)
    w = Wires()
    w.connect(a, 1, b, 2, 0.0)
    w.pump(0.0)
    w.run(0.0, 1.75)
    assert len(w.frames(a, 1, "sync")) == 1 and len(w.frames(b, 2, "sync")) == 1
    assert sorted(w.accepted[id(a)]) == sorted(e.id for e in events)


def test_a_round_that_brought_events_is_followed_up_soon() -> None:
    """A round that repaired something is followed by another ``ae_followup`` (0.5 s) later, so a
    node far behind catches up in a few seconds, not a few ``ae_interval``s; a round that finds
    nothing new is not followed up."""
    events = opens(300)
    a = core_holding([], 1, ae_serve_max=64, **AE_ONLY)
    b = core_holding(events, 2, ae_serve_max=64, **AE_ONLY)
    w = Wires()
    w.connect(a, 1, b, 2, 0.0)
    w.pump(0.0)
    now = w.run(0.0, 10.0)
    assert sorted(w.accepted[id(a)]) == sorted(e.id for e in events)
    rounds = len(w.frames(a, 1, "sync"))
    assert rounds >= 300 // 64 - 1
    w.run(now, 60.0)
    assert len(w.frames(a, 1, "sync")) == rounds  # caught up: back to the 1000 s interval


def test_ids_message_is_answered_with_want_of_missing_ids_only() -> None:
    held = opens(3)
    h = Host(core_holding(held, 1, **QUIET))
    p = Peer(h, 5, identity(9))
    prefix = held[0].id[:4]
    lacking = prefix + "0" * 59 + "1"
    p.send({"t": "ids", "l": [[prefix, [held[0].id, lacking]]]}, 1.0)
    assert [f["ids"] for f in p.got("want")] == [[lacking]]


def test_tree_answer_asks_for_buckets_empty_here_and_serves_buckets_empty_there() -> None:
    """On TREE, a child bucket empty on our side is asked for whole (WANTP) and one empty on
    the other side is served at once (EVENTS), without descending further."""
    held = opens(3)
    h = Host(core_holding(held, 1, **QUIET))
    p = Peer(h, 5, identity(9))
    ours = {e.id[0] for e in held}
    theirs = next(c for c in "0123456789abcdef" if c not in ours)
    fps = "".join("0" * 15 + "1" if c == theirs else "0" * 16 for c in "0123456789abcdef")
    counts = [1 if c == theirs else 0 for c in "0123456789abcdef"]
    p.send({"t": "tree", "n": [["", fps, counts]]}, 1.0)
    assert [f["p"] for f in p.got("wantp")] == [[theirs]]
    assert sorted(event_ids(p.got("events"))) == sorted(e.id for e in held)
    assert p.got("tree") == [] and p.got("ids") == []


def test_small_repair_is_pushed_on_and_a_catch_up_only_announced() -> None:
    """An EVENTS answer of at most ``ae_push_max`` (8) events is pushed on like new events; a
    bigger one (a catch-up) is only announced by IHAVE (never to the peer that served it)."""
    h = host(1, **QUIET)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    small, big = opens(2, who=60), opens(20, who=61)
    p1.send({"t": "events", "es": [text(e) for e in small]}, 1.0)
    assert event_ids(p2.got("event")) == [e.id for e in small]
    assert [a.hops for a in h.accepted] == [-1, -1]  # repaired: hop count unknown
    p1.send({"t": "events", "es": [text(e) for e in big]}, 2.0)
    h.run(2.0, 3.0)
    assert event_ids(p2.got("event")) == [e.id for e in small]
    announced = [i for f in p2.got("ihave") for i in f["ids"]]
    assert announced == [e.id for e in big]
    assert p1.got("ihave") == [] and p1.got("event") == []


def test_serving_is_throttled_per_peer() -> None:
    """Events served to one peer (WANT, GRAFT) draw on a token bucket: a request cannot buy an
    unbounded answer. The rest is served once tokens come back."""
    held = opens(50)
    h = Host(core_holding(held, 1, serve_rate=5.0, serve_burst=20.0, **QUIET))
    p = Peer(h, 5, identity(9))
    p.send({"t": "want", "ids": [e.id for e in held]}, 1.0)
    p.send({"t": "want", "ids": [e.id for e in held]}, 1.1)
    served = event_ids(p.got("events"))
    assert 0 < len(served) <= 20 + 1  # the burst, plus 0.1 s of refill
    assert served[:10] == [e.id for e in held[:10]]  # in store order
    p.clear()
    p.send({"t": "want", "ids": [e.id for e in held]}, 30.0)  # the bucket refilled
    assert len(event_ids(p.got("events"))) >= 10


def test_one_want_is_served_at_most_ae_serve_max_events() -> None:
    held = opens(30)
    h = Host(core_holding(held, 1, ae_serve_max=10, **QUIET))
    p = Peer(h, 5, identity(9))
    p.send({"t": "want", "ids": [e.id for e in reversed(held)]}, 1.0)
    assert event_ids(p.got("events")) == [e.id for e in held[:10]]


# --- membership and discovery --------------------------------------------------------------------------

def test_shuffle_is_answered_and_merged_into_the_passive_view() -> None:
    """SHUFFLE gets SHUFFLE_REPLY; the peers it offered are learned (and offered on to others)
    except a banned key."""
    h = host(1, **QUIET)
    bad = Peer(h, 9, identity(30), ip="203.0.113.30")
    for event in opens(6, who=30):  # forged events: -20 each, banned at -100
        if bad.closed is not None:
            break
        bad.send({"t": "event", "e": _forge(text(event)), "h": 1})
    assert bad.closed is not None and "banned" in bad.closed
    p1 = Peer(h, 1, identity(9))
    offered = [[identity(20 + i).public_hex, f"192.0.2.{20 + i}:7000"] for i in range(3)]
    p1.send({"t": "shuffle", "peers": offered + [[bad.key, "203.0.113.30:7000"]]}, 1.0)
    assert len(p1.got("shuffle_reply")) == 1
    p2 = Peer(h, 2, identity(10))
    p2.send({"t": "shuffle", "peers": []}, 2.0)
    (reply,) = p2.got("shuffle_reply")
    learned = [list(x) for x in reply["peers"]]
    assert all(x in learned for x in offered)
    assert all(k != bad.key for k, _ in learned)


def _forge(event_text: str) -> str:
    at = event_text.index('"sig":"') + 7
    return event_text[:at] + ("0" if event_text[at] != "0" else "1") + event_text[at + 1:]


def test_a_node_with_a_small_passive_view_shuffles_with_each_new_peer() -> None:
    """A joining node learns peers at once (SHUFFLE on handshake), not a shuffle interval later."""
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    (shuffle,) = p.got("shuffle")
    assert [h.core.key, "10.0.0.1:7000"] in shuffle["peers"]


def test_peers_met_are_redialed_after_a_restart() -> None:
    """Every peer that handshakes is remembered in the store; a restarted node dials them."""
    store = MemoryStore()
    cfg = GossipConfig(net=NET, listen_addr="10.0.0.1:7000", exempt_ips=(), **QUIET)
    first = Host(GossipCore(cfg, identity(1), Replica(NET, store), random.Random(1), 0.0, entropy=SeededEntropy(1)))
    Peer(first, 5, identity(9), addr="192.0.2.9:7000")
    again = Host(GossipCore(cfg, identity(1), Replica(NET, store), random.Random(1), 100.0, entropy=SeededEntropy(2)))
    again.run(100.0, 102.0)
    assert again.dials == ["192.0.2.9:7000"]


def test_an_inbound_discovery_node_is_refused() -> None:
    """A node talks to a discovery node only on a link it dialed to a bootstrap address."""
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9), role="bootstrap")
    assert p.closed is not None and "unexpected discovery-node connection" in p.closed
    assert h.core.active_keys() == []


def test_a_discovery_node_serves_only_nodes() -> None:
    """Two discovery nodes do not register with each other: the link closes at the handshake."""
    cfg = GossipConfig(net=NET, listen_addr="10.0.0.100:7000", exempt_ips=())
    d1 = DiscoveryCore(cfg, Identity.generate(b"\x64" * 32), random.Random(100), 0.0, entropy=SeededEntropy(100))
    d2 = DiscoveryCore(cfg, Identity.generate(b"\x65" * 32), random.Random(101), 0.0, entropy=SeededEntropy(101))
    w = Wires()
    w.connect(d1, 1, d2, 2, 0.0)
    w.pump(0.0)
    assert any("only serves nodes" in reason for reason in w.closed.values())
    assert d1.peers() == [] and d2.peers() == []


def test_a_shuffle_goes_out_every_shuffle_interval() -> None:
    h = host(1, anti_entropy=False, refresh_interval=0.0)
    p = Peer(h, 5, identity(9))
    p.clear()
    now = 0.0
    for _ in range(3):
        p.send({"t": "ping", "n": 1}, now)  # stay alive
        now = h.run(now, now + 9.0)
    assert 2 <= len(p.got("shuffle")) <= 4  # every 10 s +-20% over 27 s


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_links_past_max_degree_are_closed_tree_links_last(seed: int) -> None:
    """Past ``max_degree`` (by links we dialed) a random link is closed, lazy links (the tree
    does not use) first."""
    h = Host(make_core(seed, target_degree=2, min_degree=1, max_degree=3, outbound_slots=0, **QUIET))
    p1, p2, p3 = (Peer(h, c, identity(30 + c), dialed_as=f"10.9.9.{c}:7000") for c in (1, 2, 3))
    (event,) = opens(1)
    p2.send({"t": "event", "e": text(event), "h": 1}, 1.0)
    p1.send({"t": "event", "e": text(event), "h": 1}, 1.1)  # a duplicate: p1 is pruned, lazy
    assert [p.closed for p in (p1, p2, p3)] == [None, None, None]
    p4 = Peer(h, 4, identity(34), dialed_as="10.9.9.4:7000")
    assert p1.closed is not None and "maximum degree" in p1.closed
    assert [p.closed for p in (p2, p3, p4)] == [None, None, None]
    assert len(h.core.active_keys()) == 3


def test_inbound_peers_never_take_the_outbound_slots() -> None:
    """With 2 of 4 slots kept for links we dialed, a third inbound peer evicts an inbound one
    (never one we dialed), and the node still dials out while inbound peers fill the rest."""
    h = Host(make_core(1, target_degree=3, min_degree=1, max_degree=4, outbound_slots=2, **QUIET))
    ours = Peer(h, 1, identity(31), dialed_as="10.9.9.1:7000")
    inbound = [Peer(h, c, identity(30 + c), ip=f"10.2.9.{c}", now=float(c)) for c in (2, 3, 4)]
    assert ours.closed is None
    # one network group: its oldest member is protected, the youngest before the newcomer goes
    assert [p.closed is not None and "evicted" in p.closed for p in inbound] == [False, True, False]
    assert len(h.core.active_keys()) == 3
    inbound[0].send({"t": "shuffle", "peers": [[identity(50).public_hex, "10.50.0.1:7000"]]}, 5.0)
    h.run(5.0, 10.0)
    assert h.dials == ["10.50.0.1:7000"]   # 3 links, target 3, but only 1 of the 2 outbound kept


def test_refresh_dials_a_new_peer_then_drops_a_lazy_link() -> None:
    """Every ``refresh_interval`` (30 s +-20%) a node at its target degree dials one passive
    peer and, once that link is up, closes one link the tree does not use."""
    h = Host(make_core(1, target_degree=2, min_degree=1, max_degree=4, anti_entropy=False,
                       shuffle_interval=1e9, outbound_slots=0))   # (kept outbound slots would dial at once)
    p1, p2 = Peer(h, 1, identity(9)), Peer(h, 2, identity(10))
    (event,) = opens(1)
    p2.send({"t": "event", "e": text(event), "h": 1}, 0.5)
    p1.send({"t": "event", "e": text(event), "h": 1}, 0.6)  # duplicate: p1 pruned, lazy both ways
    newcomer = "192.0.2.40:7000"
    p2.send({"t": "shuffle", "peers": [[identity(40).public_hex, newcomer]]}, 0.7)
    now = 0.7
    while not h.dials:
        assert now < 40.0, "no refresh dial within 30 s + 20%"
        now = h.run(now, now + 0.25)
        p1.send({"t": "ping", "n": 1}, now)
        p2.send({"t": "ping", "n": 1}, now)
    assert h.dials == [newcomer] and now >= 24.0
    assert p1.closed is None and p2.closed is None
    p3 = Peer(h, 3, identity(40), dialed_as=newcomer, now=now)
    assert p3.closed is None
    assert p1.closed is not None and "refresh" in p1.closed
    assert p2.closed is None and sorted(h.core.active_keys()) == sorted([p2.key, p3.key])


def test_below_target_a_node_dials_its_passive_peers() -> None:
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    offered = [[identity(20 + i).public_hex, f"192.0.2.{20 + i}:7000"] for i in range(3)]
    p.send({"t": "shuffle", "peers": offered}, 0.5)
    h.run(0.5, 3.0)
    assert set(h.dials) == {addr for _, addr in offered}


def test_a_peer_that_disconnects_is_kept_as_passive_and_redialed() -> None:
    """The listen address of a peer that goes away feeds the passive view (unless banned)."""
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9), addr="192.0.2.9:7000")
    h.core.connection_lost(5, 1.0)
    h.run(1.0, 3.0)
    assert h.dials == ["192.0.2.9:7000"]


def test_address_failing_four_times_is_forgotten() -> None:
    h = host(1, **QUIET)
    p = Peer(h, 5, identity(9))
    dead = "192.0.2.66:7000"
    p.send({"t": "shuffle", "peers": [[identity(66).public_hex, dead]]}, 0.5)
    now, failed_at = 0.5, list[float]()
    while len(failed_at) < 4:
        assert now < 200, f"redial {len(failed_at) + 1} never came"
        now = h.run(now, now + 0.25)
        p.send({"t": "ping", "n": 1}, now)
        if h.dials:
            assert h.dials == [dead]
            h.dials.clear()
            h.core.dial_failed(dead, now)
            h.drain()
            failed_at.append(now)
    # Exponential backoff between the redials (1 s, 2 s, 4 s; jitter only adds)...
    gaps = [b - a for a, b in zip(failed_at, failed_at[1:])]
    assert all(gap >= 2.0 ** i for i, gap in enumerate(gaps)), gaps
    # ...and after the fourth failure in a row the address is forgotten.
    now = h.run(now, now + 200.0, step=1.0)
    assert h.dials == []


def test_node_heartbeats_its_bootstrap_every_interval() -> None:
    """A node keeps its registration alive: HEARTBEAT every ``heartbeat_interval`` (5 s); the
    bootstrap never answers it, and still expires a node that stops."""
    node = make_core(1, bootstraps=["10.0.0.100:7000"], **QUIET)
    cfg = GossipConfig(net=NET, listen_addr="10.0.0.100:7000", exempt_ips=())
    disc = DiscoveryCore(cfg, Identity.generate(b"\x64" * 32), random.Random(100), 0.0, entropy=SeededEntropy(100))
    w = Wires()
    w.connect(node, 1, disc, 2, 0.0, dialer_ip="10.0.0.1", acceptor_addr="10.0.0.100:7000")
    w.pump(0.0)
    w.run(0.0, 60.0)
    beats = len(w.frames(node, 1, "heartbeat"))
    assert 10 <= beats <= 13
    # Below its target degree it also asks for a SAMPLE, at most every ``sample_interval`` (5 s).
    assert 10 <= len(w.frames(node, 1, "sample")) <= 14
    assert w.frames(disc, 2, "heartbeat") == []
    assert disc.stats()["registered"] == 1
