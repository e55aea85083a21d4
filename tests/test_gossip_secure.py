"""The p2pauction secure session (Noise XX bound to node keys): handshake, identity binding,
relay, tampering, replay, wrong network, determinism, and the test vector in docs/protocol.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.errors import ChannelError, HandshakeError, UsageError
from p2pauction.gossip import secure
from p2pauction.gossip.entropy import RandBytes, SeededEntropy
from p2pauction.gossip.framing import MAX_FRAME_BYTES, encode_body
from p2pauction.gossip.messages import Ping
from p2pauction.gossip.noise import PROTOCOL_XX_SHA256, HandshakeState, KeyPair
from p2pauction.gossip.secure import (
    MAX_HANDSHAKE_BODY, RECORD_BYTES, RECORD_PLAINTEXT, TRANSITIONS, LocalIdentity, SecureSession,
    SessionInput, SessionState, sealed_size, v1_refusal,
)
from p2pauction.state.identity import Identity

NET = "testnet"


def node(n: int) -> Identity:
    return Identity.generate(seed=bytes([n]) * 32)


def local(n: int, seed: int | None = None) -> LocalIdentity:
    return LocalIdentity.create(node(n), SeededEntropy(1000 + n if seed is None else seed))


def session(ident: LocalIdentity, initiator: bool, seed: int, net: str = NET, addr: str | None = None,
            role: str = "node") -> SecureSession:
    return SecureSession(ident, initiator=initiator, net=net, addr=addr, role=role,
                         randbytes=SeededEntropy(seed))


def handshake(a: SecureSession, b: SecureSession) -> list[bytes]:
    """a dials b; returns the three handshake bodies."""
    m1 = a.start()
    m2 = b.receive_handshake(m1)
    assert m2 is not None
    m3 = a.receive_handshake(m2)
    assert m3 is not None
    assert b.receive_handshake(m3) is None
    return [m1, m2, m3]


def pair(seed: int = 1) -> tuple[SecureSession, SecureSession]:
    a = session(local(1), True, seed, addr="10.0.0.1:7001")
    b = session(local(2), False, seed + 1, addr="10.0.0.2:7002", role="bootstrap")
    handshake(a, b)
    return a, b


# --- the happy path -----------------------------------------------------------------------------

def test_two_sessions_handshake_and_exchange_frames() -> None:
    a, b = pair()
    assert a.established and b.established
    assert a.peer is not None and b.peer is not None
    assert (a.peer.key, a.peer.addr, a.peer.role) == (node(2).public_hex, "10.0.0.2:7002", "bootstrap")
    assert (b.peer.key, b.peer.addr, b.peer.role) == (node(1).public_hex, "10.0.0.1:7001", "node")
    assert a.peer.static == local(2).static.public and b.peer.static == local(1).static.public
    assert a.handshake_hash == b.handshake_hash and len(a.handshake_hash) == 32
    for i in range(5):
        event = encode_body({"t": "event", "e": "x" * (200 + i), "h": 1})
        body = a.encrypt(event)
        assert len(body) == sealed_size(len(event)) == len(event) + 16
        assert event not in body
        assert b.decrypt(body) == event
        assert a.decrypt(b.encrypt(b"pong %d" % i)) == b"pong %d" % i


@pytest.mark.parametrize("size", [1, RECORD_PLAINTEXT - 1, RECORD_PLAINTEXT, RECORD_PLAINTEXT + 1,
                                  3 * RECORD_PLAINTEXT, 200_000, MAX_FRAME_BYTES])
def test_frames_of_every_size_up_to_the_frame_cap(size: int) -> None:
    a, b = pair(size)
    plaintext = bytes(i % 251 for i in range(size))
    body = a.encrypt(plaintext)
    assert len(body) == sealed_size(size) <= a.max_body
    assert b.decrypt(body) == plaintext


def test_size_limits() -> None:
    a, b = pair()
    with pytest.raises(UsageError, match="1 to"):
        a.encrypt(b"")
    with pytest.raises(UsageError, match="1 to"):
        a.encrypt(bytes(MAX_FRAME_BYTES + 1))
    assert a.established  # refusing a local mistake does not break the session
    with pytest.raises(ChannelError, match="over"):
        b.decrypt(bytes(b.max_body + 1))
    c = session(local(3), False, 3)
    with pytest.raises(HandshakeError, match="over 1024"):
        c.receive_handshake(bytes(MAX_HANDSHAKE_BODY + 1))


def test_state_machine_refuses_illegal_inputs_in_one_place() -> None:
    a = session(local(1), True, 1)
    b = session(local(2), False, 2)
    assert (a.state, b.state) == (SessionState.START, SessionState.AWAIT_MSG1)
    with pytest.raises(UsageError, match="cannot encrypt in state start"):
        a.encrypt(b"x")
    with pytest.raises(UsageError, match="cannot start in state await_msg1"):
        b.start()
    with pytest.raises(UsageError, match="cannot handshake in state start"):
        a.receive_handshake(bytes(32))
    assert (a.state, b.state) == (SessionState.START, SessionState.AWAIT_MSG1)  # refused, unchanged
    m2 = b.receive_handshake(a.start())
    assert (a.state, b.state) == (SessionState.AWAIT_MSG2, SessionState.AWAIT_MSG3)
    with pytest.raises(UsageError, match="cannot decrypt in state await_msg3"):
        b.decrypt(bytes(20))
    assert b.peer is None
    assert m2 is not None
    b.receive_handshake(a.receive_handshake(m2) or b"")
    assert (a.state, b.state) == (SessionState.ESTABLISHED, SessionState.ESTABLISHED)
    with pytest.raises(UsageError, match="cannot handshake in state established"):
        a.receive_handshake(bytes(32))
    with pytest.raises(ChannelError):
        b.decrypt(bytes(40))
    assert b.state is SessionState.FAILED and b.peer is None
    with pytest.raises(UsageError, match="session failed"):
        b.decrypt(a.encrypt(b"too late"))
    # Every input that is legal somewhere appears in the table, and FAILED has no way out.
    assert {i for _, i in TRANSITIONS} == set(SessionInput)
    assert not [s for s, _ in TRANSITIONS if s is SessionState.FAILED]


# --- identity binding and relays ----------------------------------------------------------------

def test_replaying_another_nodes_key_and_signature_is_refused_both_ways() -> None:
    victim = local(2)
    # The attacker learnt the victim's node key and static-key signature (message 2 shows them to
    # anyone who dials the victim), but signs nothing itself and has its own Noise static key.
    forged = LocalIdentity(node_key=victim.node_key, static=KeyPair.generate(SeededEntropy(66)),
                           static_sig=victim.static_sig)
    target = session(local(3), False, 10)
    attacker = session(forged, True, 11)
    m2 = target.receive_handshake(attacker.start())
    assert m2 is not None
    m3 = attacker.receive_handshake(m2)
    assert m3 is not None
    with pytest.raises(HandshakeError, match="bad handshake signature"):
        target.receive_handshake(m3)
    assert target.state is SessionState.FAILED and target.peer is None

    dialer = session(local(3), True, 12)
    attacker_resp = session(forged, False, 13)
    m2 = attacker_resp.receive_handshake(dialer.start())
    assert m2 is not None
    with pytest.raises(HandshakeError, match="bad handshake signature"):
        dialer.receive_handshake(m2)
    assert dialer.peer is None


def test_using_the_victims_static_public_key_without_its_secret_fails() -> None:
    victim = local(2)
    fake_static = KeyPair(X25519PrivateKey.from_private_bytes(bytes([66]) * 32), victim.static.public)
    forged = LocalIdentity(node_key=victim.node_key, static=fake_static, static_sig=victim.static_sig)
    target = session(local(3), False, 20)
    attacker = session(forged, True, 21)
    m2 = target.receive_handshake(attacker.start())
    assert m2 is not None
    m3 = attacker.receive_handshake(m2)   # the attacker's side "completes" with wrong keys
    assert m3 is not None
    with pytest.raises(HandshakeError, match="failed to decrypt"):
        target.receive_handshake(m3)
    dialer = session(local(3), True, 22)
    m2 = session(forged, False, 23).receive_handshake(dialer.start())
    assert m2 is not None
    with pytest.raises(HandshakeError, match="failed to decrypt"):
        dialer.receive_handshake(m2)
    assert target.peer is None and dialer.peer is None


def test_man_in_the_middle_relaying_the_handshake_cannot_read_or_inject() -> None:
    a = session(local(1), True, 30)
    b = session(local(2), False, 31)
    mallory = local(9)
    # Mallory forwards every handshake byte between A and B, and tries to make sessions of her own
    # from what she sees: as a responder to A's message 1, then with A's message 3.
    m1 = a.start()
    m_resp = session(mallory, False, 32)
    assert m_resp.receive_handshake(m1) is not None
    m2 = b.receive_handshake(m1)
    assert m2 is not None
    m3 = a.receive_handshake(m2)
    assert m3 is not None
    assert b.receive_handshake(m3) is None
    assert a.peer is not None and a.peer.key == node(2).public_hex
    assert b.peer is not None and b.peer.key == node(1).public_hex
    with pytest.raises(HandshakeError, match="failed to decrypt"):
        m_resp.receive_handshake(m3)      # A's last message is bound to B's ephemeral, not hers
    # Her own honest session with B (a different connection) gives her no key for A <-> B frames.
    m_init, b2 = session(mallory, True, 33), session(local(2), False, 34)
    handshake(m_init, b2)
    secret = b'{"t":"event","e":"bid 80 on Pic#1"}'
    frame = a.encrypt(secret)
    assert secret not in frame and b"Pic#1" not in frame
    with pytest.raises(ChannelError):
        b2.decrypt(frame)
    # Injection: a frame under her own keys, random bytes, or a replay, each fails at B.
    assert b.decrypt(frame) == secret
    for forged in (m_init.encrypt(b'{"t":"graft","ids":[]}'), bytes(len(frame)), frame):
        fresh_a, fresh_b = pair(40)
        fresh_b.decrypt(fresh_a.encrypt(b"first"))
        with pytest.raises(ChannelError):
            fresh_b.decrypt(forged)


# --- tampering, replay, reorder -----------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(message=st.integers(0, 2), position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_flipping_any_bit_of_any_handshake_message_fails(message: int, position: float, bit: int) -> None:
    a = session(local(1), True, 45)
    b = session(local(2), False, 46)

    def deliver(body: bytes, index: int) -> bytes:
        if index != message:
            return body
        tampered = bytearray(body)
        tampered[int(position * len(tampered))] ^= 1 << bit
        return bytes(tampered)

    # A flip in message 1 (the bare ephemeral key) shows when message 2 fails to decrypt at the
    # initiator; a flip in message 2 or 3 fails that message's own decryption.
    with pytest.raises(HandshakeError):
        m2 = b.receive_handshake(deliver(a.start(), 0))
        assert m2 is not None
        m3 = a.receive_handshake(deliver(m2, 1))
        assert m3 is not None
        b.receive_handshake(deliver(m3, 2))
    assert not b.established


def test_flipping_any_bit_of_a_small_frame_fails() -> None:
    a, b = pair(50)
    body = a.encrypt(encode_body(Ping(n=7).to_wire()))
    for bit in range(8 * len(body)):
        _, fresh_b = pair(50)
        tampered = bytearray(body)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ChannelError):
            fresh_b.decrypt(bytes(tampered))
        assert fresh_b.state is SessionState.FAILED
    assert b.decrypt(body) == b'{"t":"ping","n":7}'


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from([200, 1024, RECORD_PLAINTEXT + 500, 3 * RECORD_PLAINTEXT]),
       frame=st.integers(0, 2), position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_flipping_any_bit_of_any_frame_fails(size: int, frame: int, position: float, bit: int) -> None:
    a, b = pair(60)
    bodies = [a.encrypt(bytes([i]) * size) for i in range(3)]
    tampered = bytearray(bodies[frame])
    tampered[int(position * len(tampered))] ^= 1 << bit
    bodies[frame] = bytes(tampered)
    with pytest.raises(ChannelError):
        for i, body in enumerate(bodies):
            assert b.decrypt(body) == bytes([i]) * size


def test_cutting_splitting_or_reordering_records_of_a_frame_fails() -> None:
    plaintext = bytes(range(256)) * 600   # 153600 bytes: three records
    a, b = pair(70)
    body = a.encrypt(plaintext)
    first, rest = body[:RECORD_BYTES], body[RECORD_BYTES:]
    attempts = [
        [first],                              # truncated to the first record
        [first, rest],                        # split into two frames at a record boundary
        [rest[:RECORD_BYTES] + first + rest[RECORD_BYTES:]],   # records swapped
        [body + body[:100]],                  # bytes appended
    ]
    for frames in attempts:
        _, fresh_b = pair(70)
        with pytest.raises(ChannelError):
            for f in frames:
                fresh_b.decrypt(f)
    assert b.decrypt(body) == plaintext


def test_replayed_reordered_or_dropped_frames_fail() -> None:
    a, b = pair(80)
    f1, f2, f3 = (a.encrypt(b"frame %d" % i) for i in (1, 2, 3))
    assert b.decrypt(f1) == b"frame 1"
    with pytest.raises(ChannelError):
        b.decrypt(f1)                         # replay
    _, b = pair(80)
    with pytest.raises(ChannelError):
        b.decrypt(f2)                         # f2 before f1 (reordered, or f1 dropped)
    _, b = pair(80)
    b.decrypt(f1)
    with pytest.raises(ChannelError):
        b.decrypt(f3)                         # f2 dropped
    _, b = pair(80)
    with pytest.raises(ChannelError):
        b.decrypt(pair(80)[1].encrypt(b"frame 1"))   # a frame the peer sent, reflected back


# --- network, version, self ---------------------------------------------------------------------

def test_wrong_network_is_a_clear_error() -> None:
    a = session(local(1), True, 90, net="mainnet")
    b = session(local(2), False, 91, net="testnet")
    m2 = b.receive_handshake(a.start())
    assert m2 is not None
    with pytest.raises(HandshakeError, match="wrong network or protocol version") as info:
        a.receive_handshake(m2)
    assert "'mainnet'" in str(info.value)
    assert a.state is SessionState.FAILED


def test_wrong_protocol_version_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    b = session(local(2), False, 93)
    monkeypatch.setattr(secure, "PROLOGUE_PREFIX", b"p2pauction/3\0")
    a = session(local(1), True, 92)
    m2 = b.receive_handshake(a.start())
    assert m2 is not None
    with pytest.raises(HandshakeError, match="wrong network or protocol version"):
        a.receive_handshake(m2)


def test_version_1_peer_gets_and_gives_a_clear_error() -> None:
    hello = encode_body({"t": "hello", "net": NET, "ver": 1, "key": node(5).public_hex,   # what v1 sent
                         "addr": "10.0.0.5:7005", "nonce": "ab" * 32, "role": "node"})
    responder = session(local(2), False, 94)
    with pytest.raises(HandshakeError, match="protocol version 1"):
        responder.receive_handshake(hello)
    refusal = v1_refusal(hello)
    assert refusal is not None
    assert json.loads(refusal) == {"t": "error", "reason": "protocol version 2 required (encrypted "
                                                           "transport): upgrade p2pauction"}
    initiator = session(local(1), True, 95)
    initiator.start()
    with pytest.raises(HandshakeError, match="protocol version 1"):
        initiator.receive_handshake(hello)   # an old node sends its HELLO as soon as it connects
    assert v1_refusal(bytes(32)) is None and v1_refusal(b"[" * 1000) is None


def test_self_connection_is_refused() -> None:
    me = local(1)
    a, b = session(me, True, 96), session(me, False, 97)
    m2 = b.receive_handshake(a.start())
    assert m2 is not None
    with pytest.raises(HandshakeError, match="self-connection"):
        a.receive_handshake(m2)


def test_malformed_identity_payloads_are_handshake_errors() -> None:
    bad_payloads = [b"", b"not json", b'{"t":"identity"}', b'{"t":"hello","key":"00"}', b"[1]",
                    encode_body({"t": "identity", "key": "A" * 64, "sig": "0" * 128, "addr": None,
                                 "role": "node"}),
                    encode_body({"t": "identity", "key": "0" * 64, "sig": "0" * 128, "addr": "nope",
                                 "role": "node"}),
                    encode_body({"t": "identity", "key": "0" * 64, "sig": "0" * 128, "addr": None,
                                 "role": "king"})]
    for i, payload in enumerate(bad_payloads):
        dialer = session(local(1), True, 100 + i)
        rogue = HandshakeState(PROTOCOL_XX_SHA256, initiator=False, prologue=secure.prologue(NET),
                               static=local(8).static, randbytes=SeededEntropy(i))
        rogue.read_message(dialer.start())
        with pytest.raises(HandshakeError):
            dialer.receive_handshake(rogue.write_message(payload))
        assert dialer.state is SessionState.FAILED


@settings(max_examples=150, deadline=None)
@given(stage=st.integers(0, 2), junk=st.binary(max_size=700))
def test_random_handshake_bodies_work_or_raise_handshake_error(stage: int, junk: bytes) -> None:
    a = session(local(1), True, 110)
    b = session(local(2), False, 111)
    receiver = b
    if stage >= 1:
        m2 = b.receive_handshake(a.start())
        receiver = a
        if stage == 2:
            assert m2 is not None
            a.receive_handshake(m2)
            receiver = b
    try:
        receiver.receive_handshake(junk)
    except HandshakeError:
        assert receiver.state is SessionState.FAILED
    else:   # only message 1 (a bare ephemeral key) can be made up
        assert stage == 0 and len(junk) == 32 and b.state is SessionState.AWAIT_MSG3


@settings(max_examples=100, deadline=None)
@given(junk=st.binary(max_size=300))
def test_random_frame_bodies_raise_channel_error(junk: bytes) -> None:
    _, b = pair(120)
    with pytest.raises(ChannelError):
        b.decrypt(junk)


# --- determinism --------------------------------------------------------------------------------

def transcript(seed: int) -> list[bytes]:
    a = session(local(1, seed), True, seed + 1)
    b = session(local(2, seed + 2), False, seed + 3)
    out = handshake(a, b)
    return out + [a.encrypt(b"frame"), b.encrypt(b"reply"), a.handshake_hash]


def test_same_seed_same_bytes() -> None:
    assert transcript(5) == transcript(5)
    assert transcript(5) != transcript(6)


# --- the test vector in docs/protocol.md --------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
BEGIN, END = "<!-- v2-test-vector:begin -->", "<!-- v2-test-vector:end -->"


def fixed(hex_key: str) -> RandBytes:
    key = bytes.fromhex(hex_key)

    def randbytes(n: int) -> bytes:
        assert n == len(key)
        return key
    return randbytes


def doc_vector() -> list[tuple[str, str]]:
    """Every value of the documented transcript, regenerated from the fixed keys."""
    values: list[tuple[str, str]] = []
    net = "p2pauction-example"
    sides = []
    for who, n, addr in (("initiator", 1, "192.0.2.1:7001"), ("responder", 2, "192.0.2.2:7002")):
        ident = Identity.generate(bytes([n]) * 32)
        static = KeyPair.from_private(bytes([0x10 + n]) * 32)
        eph = bytes([0x20 + n]) * 32
        mine = LocalIdentity.from_static(ident, static)
        sides.append(SecureSession(mine, initiator=who == "initiator", net=net, addr=addr,
                                   randbytes=fixed(eph.hex())))
        payload = secure.IdentityPayload(key=ident.public_hex, sig=mine.static_sig.hex(), addr=addr, role="node")
        values += [(f"{who}.node_private", ident.private_bytes().hex()),
                   (f"{who}.node_public", ident.public_hex),
                   (f"{who}.static_private", static.private_bytes().hex()),
                   (f"{who}.static_public", static.public.hex()),
                   (f"{who}.static_sig", mine.static_sig.hex()),
                   (f"{who}.payload", payload.to_bytes().hex()),
                   (f"{who}.ephemeral_private", eph.hex()),
                   (f"{who}.ephemeral_public", KeyPair.from_private(eph).public.hex())]
    a, b = sides
    values.append(("prologue", secure.prologue(net).hex()))
    messages = handshake(a, b)
    values += [(f"message{i}", m.hex()) for i, m in enumerate(messages, 1)]
    values.append(("handshake_hash", a.handshake_hash.hex()))
    plaintext = encode_body(Ping(n=1).to_wire())
    body = a.encrypt(plaintext)
    values += [("frame1.plaintext", plaintext.hex()),
               ("frame1.wire", (len(body).to_bytes(4, "big") + body).hex())]
    assert b.decrypt(body) == plaintext
    return values


def render(values: list[tuple[str, str]], width: int = 64) -> str:
    lines = []
    for name, value in values:
        chunks = [value[i:i + width] for i in range(0, len(value), width)] or [""]
        lines.append(f"{name}:")
        lines += [f"  {c}" for c in chunks]
    return "\n".join(lines)


def parse(text: str) -> list[tuple[str, str]]:
    values: list[tuple[str, str]] = []
    for line in text.splitlines():
        if re.fullmatch(r"[a-z0-9_.]+:", line):
            values.append((line[:-1], ""))
        elif re.fullmatch(r"  [0-9a-f]+", line) and values:
            values[-1] = (values[-1][0], values[-1][1] + line.strip())
    return values


def test_docs_test_vector_matches_the_code() -> None:
    text = DOC.read_text("utf-8")
    assert BEGIN in text and END in text, "docs/protocol.md lost its v2 test vector"
    documented = parse(text.split(BEGIN, 1)[1].split(END, 1)[0])
    regenerated = doc_vector()
    assert documented == regenerated, "docs/protocol.md's vector differs; the block should be:\n" + render(regenerated)
