"""The link's secure handshake (Noise XX bound to node keys): success, and every way it must
fail (with a reason)."""

from __future__ import annotations

from p2pauction.gossip.actions import CloseConn, Send
from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.framing import FrameDecoder
from p2pauction.gossip.noise import KeyPair
from p2pauction.gossip.secure import MAX_HANDSHAKE_BODY, LocalIdentity

from tests.gossip_wire import NET, Pipe, RawPeer, identity, make_core


def test_two_cores_handshake_and_know_each_other_by_key() -> None:
    a, b = make_core(1), make_core(2)
    pipe = Pipe(a, b)
    assert not pipe.closed
    assert a.active_keys() == [b.key] and b.active_keys() == [a.key]
    assert a.stats()["links"]["handshakes_ok"] == 1
    # The inbound side learns the dialable address from the IDENTITY payload, not the ephemeral socket port.
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


def test_version_1_peer_gets_a_clear_error() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send_plain({"t": "hello", "net": NET, "ver": 1, "key": identity(9).public_hex, "addr": None,
                     "nonce": "ab" * 32, "role": "node"})
    assert peer.closed is not None and "protocol version 1" in peer.closed
    errors = [m for m in peer.inbox if m["t"] == "error"]
    assert errors and "protocol version 2 required" in errors[0]["reason"]


def test_node_key_that_did_not_sign_the_static_key_fails() -> None:
    core = make_core(1)
    own = LocalIdentity.create(identity(9), SeededEntropy(9))
    # claims key 8, but the signature over its Noise static key is by key 9
    liar = LocalIdentity(node_key=identity(8).public_hex, static=own.static, static_sig=own.static_sig)
    peer = RawPeer(core, 5, identity(9), static_of=liar)
    peer.handshake()
    assert peer.closed is not None and "signature" in peer.closed
    assert core.active_keys() == []


def test_replaying_another_nodes_key_and_signature_fails() -> None:
    core = make_core(1)
    victim = LocalIdentity.create(identity(8), SeededEntropy(8))   # as seen in its handshakes
    mine = KeyPair.generate(SeededEntropy(99))                      # the thief's own static key
    thief = LocalIdentity(node_key=victim.node_key, static=mine, static_sig=victim.static_sig)
    peer = RawPeer(core, 5, identity(9), static_of=thief)
    peer.handshake()
    assert peer.closed is not None and "signature" in peer.closed
    assert core.active_keys() == []
    assert not core.scores.is_banned("key:" + victim.node_key, 0.0)


def test_self_connection_is_refused() -> None:
    core = make_core(1)   # dials its own address: conn 1 is the dial, conn 2 the accepted socket
    core.connection_made(1, outbound=True, remote_addr="10.0.0.1:7000", now=0.0)
    core.connection_made(2, outbound=False, remote_addr="10.0.0.1:40000", now=0.0)
    closed: dict[int, str] = {}
    for _ in range(10):
        for action in core.take_actions():
            if isinstance(action, Send) and action.conn not in closed:
                core.data_received(3 - action.conn, action.data, 0.0)
            elif isinstance(action, CloseConn):
                closed[action.conn] = action.reason
    assert any("self-connection" in r for r in closed.values())
    assert core.active_keys() == []


def test_message_before_handshake_is_a_violation() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send_plain({"t": "ihave", "ids": []})
    assert peer.closed is not None and "handshake message 1 must be 32 bytes" in peer.closed
    assert core.active_keys() == []


def test_handshake_frame_over_the_cap_is_refused_from_its_header() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.send_bytes((MAX_HANDSHAKE_BODY + 1).to_bytes(4, "big"))
    assert peer.closed is not None and "over the 1024-byte limit" in peer.closed


def test_large_frame_right_behind_message_3_is_accepted() -> None:
    core = make_core(1)
    peer = RawPeer(core, 5, identity(9))
    peer.start()
    reply = peer.session.receive_handshake(peer.handshake_in.pop(0))
    assert reply is not None
    big = {"t": "ihave", "ids": [f"{i:064x}" for i in range(200)]}   # about 14 KB
    peer.send_bytes(len(reply).to_bytes(4, "big") + reply + peer.sealed(big))
    assert peer.closed is None and core.active_keys() == [identity(9).public_hex]


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


def test_every_connection_gets_a_fresh_ephemeral_key() -> None:
    core = make_core(1)
    p1 = RawPeer(core, 5, identity(9))
    p2 = RawPeer(core, 6, identity(9))
    p1.start()
    p2.start()
    # message 2 begins with the responder's ephemeral public key
    assert p1.handshake_in[0][:32] != p2.handshake_in[0][:32]


def test_garbage_before_handshake_closes_only_that_connection() -> None:
    a, b = make_core(1), make_core(2)
    pipe = Pipe(a, b)
    junk = RawPeer(a, 7, identity(9))
    junk.send_bytes(b"\x7f\xff\xff\xffgarbage")
    assert junk.closed is not None and "malformed frame" in junk.closed
    assert a.active_keys() == [b.key] and not pipe.closed
    assert FrameDecoder().feed(b"")  == []
