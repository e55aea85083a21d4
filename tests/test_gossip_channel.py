"""Acceptance of the encrypted transport at the core level (issue 12): the handshake relay and
key theft fail without costing the impersonated node anything, any flipped bit of any frame after
the handshake closes the link, and the operator log says who came and went and why."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from p2pauction.gossip.actions import CloseConn, Send
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.secure import LocalIdentity
from tests.gossip_wire import RawPeer, identity, make_core


class Net:
    """Cores joined by numbered connections; ``route`` maps (core, conn) to the other end. A
    relay is just a route whose two ends are connections the relay made on both sides."""

    def __init__(self) -> None:
        self.route: dict[tuple[int, int], tuple[GossipCore, int]] = {}
        self.closed: dict[tuple[int, int], str] = {}
        self.cores: list[GossipCore] = []

    def join(self, dialer: GossipCore, d_conn: int, acceptor: GossipCore, a_conn: int, *,
             dialed: str, from_addr: str, now: float = 0.0) -> None:
        for core in (dialer, acceptor):
            if all(c is not core for c in self.cores):
                self.cores.append(core)
        self.route[(id(dialer), d_conn)] = (acceptor, a_conn)
        self.route[(id(acceptor), a_conn)] = (dialer, d_conn)
        dialer.connection_made(d_conn, outbound=True, remote_addr=dialed, now=now)
        acceptor.connection_made(a_conn, outbound=False, remote_addr=from_addr, now=now)

    def pump(self, now: float = 0.0, tamper: Any = None) -> None:
        for _ in range(200):
            moved = False
            for core in self.cores:
                for action in core.take_actions():
                    moved = True
                    end = (id(core), getattr(action, "conn", -1))
                    other = self.route.get(end)
                    if isinstance(action, Send) and other is not None and end not in self.closed:
                        data = tamper(end, action.data) if tamper is not None else action.data
                        if (id(other[0]), other[1]) not in self.closed:
                            other[0].data_received(other[1], data, now)
                    elif isinstance(action, CloseConn) and end not in self.closed:
                        self.closed[end] = action.reason
                        core.connection_lost(action.conn, now)
                        if other is not None and (id(other[0]), other[1]) not in self.closed:
                            self.closed[(id(other[0]), other[1])] = "lost"
                            other[0].connection_lost(other[1], now)
            if not moved:
                return


def honest_pair() -> tuple[Net, GossipCore, GossipCore]:
    """T (core 1) and P (core 2), P dialed T."""
    t, p = make_core(1), make_core(2)
    net = Net()
    net.join(p, 1, t, 1, dialed="10.0.0.1:7000", from_addr="10.0.0.2:40001")
    net.pump()
    assert t.active_keys() == [p.key] and p.active_keys() == [t.key]
    return net, t, p


def test_a_relay_between_two_honest_nodes_gains_nothing_and_gets_nobody_banned() -> None:
    """Mallory (10.6.6.6) is dialed by P and dials T, and forwards the bytes both ways: T meets
    the real P through her, end to end (she holds no key of that session; the relayed link
    replaces the direct one, as a reconnect does). When she corrupts what P sends -- on two relayed
    connections, three times -- T closes those links and blames her IP, never P's key: P is not banned and
    connects to T again at once (in protocol version 1 this got P's key banned at T for 600 s)."""
    net, t, p = honest_pair()
    for attempt, conn in enumerate((2, 3, 4)):
        sent = {"n": 0}

        def tamper(end: tuple[int, int], data: bytes, conn: int = conn) -> bytes:
            if end != (id(p), conn):
                return data
            sent["n"] += 1
            if sent["n"] == 3:     # message 1, message 3, then P's first encrypted frame
                return data[:-1] + bytes([data[-1] ^ 1])
            return data
        now = 1.0 * (attempt + 1)
        net.join(p, conn, t, conn, dialed="10.6.6.6:7000", from_addr=f"10.6.6.6:{41000 + attempt}", now=now)
        net.pump(now, tamper)
        assert sent["n"] >= 3, "P sent nothing through the relay after the handshake"
        assert (id(t), conn) in net.closed and "lost" not in net.closed[(id(t), conn)]
        assert "undecryptable" in net.closed[(id(t), conn)]
    assert t.scores.is_banned("ip:10.6.6.6", 30.0)
    assert not t.scores.is_banned("key:" + p.key, 30.0)
    # P dials T again directly and is welcome
    net.join(p, 9, t, 9, dialed="10.0.0.1:7000", from_addr="10.0.0.2:40009", now=30.0)
    net.pump(30.0)
    assert t.active_keys() == [p.key] and p.active_keys() == [t.key]


def test_using_p_key_without_p_secret_is_refused_and_p_keeps_its_link_and_good_name() -> None:
    """Mallory presents P's node key and P's signature over P's static key (what any node that
    ever met P has seen) with a static key of her own: refused every time, T's link to P is
    untouched and P's key is not banned (six failures would ban the claimed key if a failed
    handshake counted against it, as version 1's failed AUTH did)."""
    _, t, p = honest_pair()
    mine = LocalIdentity.create(identity(66), SeededEntropy(66))
    with_own_static = LocalIdentity(node_key=p.key, static=mine.static, static_sig=p.links.local.static_sig)
    for conn in range(10, 16):   # six failures: -150 for whatever they count against
        mallory = RawPeer(t, conn, identity(66), remote=f"10.6.6.{conn}:5000", static_of=with_own_static)
        mallory.handshake()
        assert mallory.closed is not None and "signature" in mallory.closed
    assert t.active_keys() == [p.key] and p.active_keys() == [t.key]
    assert not t.scores.is_banned("key:" + p.key, 1.0)


def _frames_after_handshake(seed: int) -> list[dict[str, Any]]:
    return [{"t": "ping", "n": seed}, {"t": "ihave", "ids": [f"{i:064x}" for i in range(3)], "hs": [1, 2, 3]},
            {"t": "sync", "r": "00" * 16}]


@pytest.mark.parametrize("which", range(3))
def test_flipping_any_bit_of_a_frame_after_the_handshake_closes_the_link(which: int) -> None:
    """Every bit of the frame (length header included), one connection per bit."""
    core = make_core(1)
    message = _frames_after_handshake(7)[which]
    conn = 100
    probe = RawPeer(core, conn, identity(9))
    probe.handshake()
    frame_len = len(probe.sealed(message))
    step = 1 if frame_len <= 64 else 5      # the ~260-byte IHAVE: every 5th bit (header: all)
    bits = sorted(set(range(32)) | set(range(0, frame_len * 8, step)))
    for bit in bits:
        conn += 1
        now = 100.0 * conn   # the core's clock runs on: each probe gets its own frame deadline
        peer = RawPeer(core, conn, identity(9), remote=f"10.9.{conn // 250}.{conn % 250}:5000", now=now)
        peer.handshake(now)
        assert peer.closed is None
        frame = bytearray(peer.sealed(message))
        frame[bit // 8] ^= 0x80 >> (bit % 8)
        peer.send_bytes(bytes(frame), now)
        if peer.closed is None:            # a longer length: the link waits for more bytes...
            peer.send_bytes(peer.sealed({"t": "ping", "n": 1}), now)
        if peer.closed is None:            # ...and the frame deadline ends it
            core.tick(now + core.cfg.frame_timeout + core.cfg.housekeeping_interval)
            peer.collect()
        assert peer.closed is not None, f"bit {bit} of {message['t']} flipped, link still open"
        assert all(m["t"] != "pong" for m in peer.inbox)


def test_tampered_frame_is_never_delivered_even_partly() -> None:
    """The message of a tampered frame never reaches the protocol: no PONG, no state change."""
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    frame = bytearray(peer.sealed({"t": "ping", "n": 42}))
    frame[-1] ^= 1
    replies = peer.send_bytes(bytes(frame))
    assert {"t": "pong", "n": 42} not in replies and peer.closed is not None
    assert core.stats()["links"]["undecryptable"] == 1


# --- operator logs (issue 15) ------------------------------------------------------------------------

def test_peer_connected_and_lost_are_logged_at_info_with_key_address_and_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="p2pauction")
    net, t, p = honest_pair()
    connected = [r.getMessage() for r in caplog.records if "peer_connected" in r.getMessage()]
    assert any(p.key[:12] in m and "10.0.0.2:40001" in m and "inbound" in m for m in connected), connected
    assert all(r.levelno == logging.INFO for r in caplog.records if "peer_connected" in r.getMessage())
    caplog.clear()
    t.links.close(t.membership.active[p.key], "test: going away", 5.0)
    net.pump(5.0)
    lost = [r for r in caplog.records if "peer_lost" in r.getMessage()]
    assert any(p.key[:12] in r.getMessage() and "going away" in r.getMessage() for r in lost), lost
    assert any(t.key[:12] in r.getMessage() for r in lost)   # P's side: lost T (peer reported)
    assert all(r.levelno == logging.INFO for r in lost)


def test_a_rejected_event_is_logged_at_debug_with_reason_sender_and_id(caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_gossip_rules import opens, text

    caplog.set_level(logging.DEBUG, logger="p2pauction")
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake()
    (event,) = opens(1)
    good = text(event)
    at = good.index('"sig":"') + 7
    forged = good[:at] + ("1" if good[at] == "0" else "0") + good[at + 1:]   # the signature fails
    peer.send({"t": "event", "e": forged, "h": 1})
    lines = [r for r in caplog.records if "event_rejected" in r.getMessage()]
    assert lines and lines[0].levelno == logging.DEBUG
    assert identity(9).public_hex[:12] in lines[0].getMessage()
    assert "reason" in lines[0].getMessage()


def test_an_exempt_ip_is_never_reported_as_banned(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="p2pauction")
    core = make_core(1, exempt_ips=("127.0.0.1",))
    for conn in (5, 6):   # two undecryptable frames: the IP would be banned, but it is exempt
        peer = RawPeer(core, conn, identity(9), remote="127.0.0.1:5000")
        peer.handshake()
        peer.send_bytes(b"\x00\x00\x00\x20" + bytes(32))
        assert peer.closed is not None
    messages = [r.getMessage() for r in caplog.records]
    assert not any("banned" in m and "ip:127.0.0.1" in m for m in messages), messages
    for conn in (7, 8):   # from a non-exempt address the same is a ban, and it is logged
        peer = RawPeer(core, conn, identity(9), remote="192.0.2.1:5000")
        peer.handshake()
        peer.send_bytes(b"\x00\x00\x00\x20" + bytes(32))
    assert any("banned" in r.getMessage() and "ip:192.0.2.1" in r.getMessage() for r in caplog.records)
