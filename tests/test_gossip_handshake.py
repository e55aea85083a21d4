"""The mutual handshake: success, and every way it must fail (with a reason)."""

from __future__ import annotations

from p2pauction.gossip import handshake
from p2pauction.gossip.actions import CloseConn, Send
from p2pauction.gossip.framing import FrameDecoder

from tests.gossip_wire import NET, Pipe, RawPeer, identity, make_core


def test_two_cores_handshake_and_know_each_other_by_key() -> None:
    a, b = make_core(1), make_core(2)
    pipe = Pipe(a, b)
    assert not pipe.closed
    assert a.active_keys() == [b.key] and b.active_keys() == [a.key]
    assert a.stats()["links"]["handshakes_ok"] == 1
    # The inbound side learns the dialable address from HELLO, not the ephemeral socket port.
    assert b.peers()[0]["addr"] == "10.0.0.1:7000"
    assert b.replica.store.known_peers() == [(a.key, "10.0.0.1:7000")]


def test_unspecified_listen_host_is_replaced_by_socket_host() -> None:
    a = make_core(1, listen_addr="0.0.0.0:7001")
    b = make_core(2)
    Pipe(a, b, a_addr="192.0.2.7:50000")
    assert b.peers()[0]["addr"] == "192.0.2.7:7001"


def test_wrong_network_closes_with_reason() -> None:
    a, b = make_core(1), make_core(2, net="other-net")
    pipe = Pipe(a, b)
    assert any("wrong network" in r for r in pipe.closed.values())
    assert a.active_keys() == [] and b.active_keys() == []


def test_wrong_version_closes_with_error_frame() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake(ver=2)
    assert peer.closed is not None and "version" in peer.closed
    errors = [m for m in peer.inbox if m["t"] == "error"]
    assert errors and "version" in errors[0]["reason"]


def test_bad_signature_closes() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.handshake(sig="00" * 64)
    assert peer.closed is not None and "signature" in peer.closed
    assert core.active_keys() == []


def test_signature_over_someone_elses_nonce_fails() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    stolen = handshake.make_auth(identity(9), "cd" * 32, NET).sig  # signed for another connection
    peer.handshake(sig=stolen)
    assert peer.closed is not None and "signature" in peer.closed


def test_claiming_another_key_fails() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send({"t": "hello", "net": NET, "ver": 1, "key": identity(8).public_hex, "addr": None,
               "nonce": peer.nonce, "role": "node"})
    peer.send({"t": "auth", "sig": handshake.make_auth(identity(9), peer.their_hello()["nonce"], NET).sig})
    assert peer.closed is not None and "signature" in peer.closed


def test_self_connection_is_refused() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(1))  # a connection that loops back to ourselves
    peer.handshake()
    assert peer.closed is not None and "self-connection" in peer.closed


def test_message_before_handshake_is_a_violation() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send({"t": "ihave", "ids": []})
    assert peer.closed is not None and "before the handshake" in peer.closed


def test_auth_before_hello_is_a_violation() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send({"t": "auth", "sig": "00" * 64})
    assert peer.closed is not None and "AUTH before HELLO" in peer.closed


def test_handshake_timeout() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9), now=0.0)
    core.tick(4.0)
    peer.collect()
    assert peer.closed is None
    core.tick(core.next_deadline() + 1.5)
    peer.collect()
    assert peer.closed == "handshake timeout"
    assert core.stats()["links"]["handshake_timeouts"] == 1


def test_duplicate_connection_keeps_one_link_on_both_sides() -> None:
    a, b = make_core(1), make_core(2)
    first = Pipe(a, b)
    # b dials a while the first link is up: both sides must keep the same single link.
    second_b, second_a = 11, 12
    b.connection_made(second_b, outbound=True, remote_addr="10.0.0.1:7000", now=1.0)
    a.connection_made(second_a, outbound=False, remote_addr="10.0.0.2:40002", now=1.0)
    closed: dict[int, str] = {}
    for _ in range(20):
        for src, dst, mapping in ((a, b, {1: 2, second_a: second_b}), (b, a, {2: 1, second_b: second_a})):
            for action in src.take_actions():
                if isinstance(action, Send) and action.conn in mapping and action.conn not in closed:
                    dst.data_received(mapping[action.conn], action.data, 1.0)
                elif isinstance(action, CloseConn):
                    closed[action.conn] = action.reason
    assert len(a.active_keys()) == 1 and len(b.active_keys()) == 1
    kept_a = a.peers()[0]["outbound"]
    kept_b = b.peers()[0]["outbound"]
    assert kept_a != kept_b  # the same connection seen from its two ends
    assert any("duplicate" in r for r in closed.values())
    assert first.closed == {}


def test_hello_carries_fresh_nonce_per_connection() -> None:
    core = make_core(1)
    p1 = RawPeer(core, 5, identity(9))
    p2 = RawPeer(core, 6, identity(10))
    assert p1.their_hello()["nonce"] != p2.their_hello()["nonce"]
    assert len(p1.their_hello()["nonce"]) == 64


def test_garbage_before_handshake_closes_only_that_connection() -> None:
    a, b = make_core(1), make_core(2)
    pipe = Pipe(a, b)
    junk = RawPeer(a, 7, identity(9))
    junk.send_bytes(b"\x7f\xff\xff\xffgarbage")
    assert junk.closed is not None and "malformed frame" in junk.closed
    assert a.active_keys() == [b.key] and not pipe.closed
    assert FrameDecoder().feed(b"")  == []
