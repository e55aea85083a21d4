"""The Noise XX implementation: published test vectors, and hostile-input properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.errors import ChannelError, HandshakeError, UsageError
from p2pauction.gossip.entropy import SeededEntropy
from p2pauction.gossip.noise import (
    MAX_NONCE, PROTOCOL_XX_BLAKE2S, PROTOCOL_XX_SHA256, CipherState, HandshakeState, KeyPair,
)

VECTORS_FILE = Path(__file__).parent / "vectors" / "noise_xx.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]


def _fixed(*chunks: str) -> Any:
    """A randbytes that returns the given hex chunks in order (the vectors' ephemeral keys)."""
    queue = [bytes.fromhex(c) for c in chunks]

    def randbytes(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n
        return chunk
    return randbytes


def _vector_states(v: dict[str, Any]) -> tuple[HandshakeState, HandshakeState]:
    name = v["protocol_name"]
    init = HandshakeState(name, initiator=True, prologue=bytes.fromhex(v["init_prologue"]),
                          static=KeyPair.from_private(bytes.fromhex(v["init_static"])),
                          randbytes=_fixed(v["init_ephemeral"]))
    resp = HandshakeState(name, initiator=False, prologue=bytes.fromhex(v["resp_prologue"]),
                          static=KeyPair.from_private(bytes.fromhex(v["resp_static"])),
                          randbytes=_fixed(v["resp_ephemeral"]))
    return init, resp


def test_vector_file_covers_both_suites_from_every_source() -> None:
    names = sorted((v["protocol_name"], v["source"].split("/")[4]) for v in VECTORS)
    assert {n for n, _ in names} == {PROTOCOL_XX_SHA256, PROTOCOL_XX_BLAKE2S}
    assert {s for _, s in names} == {"cacophony", "snow", "noise-c"}
    assert len(VECTORS) == 6


@pytest.mark.parametrize("v", VECTORS, ids=[f"{v['protocol_name']}@{v['source'].split('/')[4]}" for v in VECTORS])
def test_published_vector(v: dict[str, Any]) -> None:
    init, resp = _vector_states(v)
    messages = v["messages"]
    pair: dict[bool, Any] = {}
    for i, m in enumerate(messages):
        payload, expected = bytes.fromhex(m["payload"]), bytes.fromhex(m["ciphertext"])
        sender_is_init = i % 2 == 0
        sender, receiver = (init, resp) if sender_is_init else (resp, init)
        if i < 3:
            assert sender.my_turn and not receiver.my_turn
            wire = sender.write_message(payload)
            assert wire == expected, f"handshake message {i + 1}"
            assert receiver.read_message(wire) == payload
            if i == 2:
                assert init.complete and resp.complete
                assert init.handshake_hash == resp.handshake_hash
                if "handshake_hash" in v:
                    assert init.handshake_hash.hex() == v["handshake_hash"]
                assert init.remote_static == KeyPair.from_private(bytes.fromhex(v["resp_static"])).public
                assert resp.remote_static == KeyPair.from_private(bytes.fromhex(v["init_static"])).public
                pair = {True: init.split(), False: resp.split()}
        else:
            wire = pair[sender_is_init].send.encrypt_with_ad(b"", payload)
            assert wire == expected, f"transport message {i + 1}"
            assert pair[not sender_is_init].receive.decrypt_with_ad(b"", wire) == payload
    assert len(messages) > 3, "the vector has transport messages too"


# --- hostile input ----------------------------------------------------------------------------

def _pair(seed: int) -> tuple[HandshakeState, HandshakeState]:
    rng = SeededEntropy(seed)
    init = HandshakeState(PROTOCOL_XX_SHA256, initiator=True, prologue=b"p", static=KeyPair.generate(rng),
                          randbytes=rng)
    resp = HandshakeState(PROTOCOL_XX_SHA256, initiator=False, prologue=b"p", static=KeyPair.generate(rng),
                          randbytes=rng)
    return init, resp


def _advance(init: HandshakeState, resp: HandshakeState, steps: int) -> None:
    for i in range(steps):
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        receiver.read_message(sender.write_message(b"payload %d" % i))


@settings(max_examples=150, deadline=None)
@given(stage=st.integers(0, 2), junk=st.binary(max_size=300))
def test_random_bytes_to_handshake_reader_work_or_raise_handshake_error(stage: int, junk: bytes) -> None:
    init, resp = _pair(stage)
    _advance(init, resp, stage)
    receiver = resp if stage % 2 == 0 else init
    try:
        receiver.read_message(junk)
    except HandshakeError:
        assert not receiver.complete
        with pytest.raises(UsageError, match="failed earlier"):
            receiver.read_message(junk)
        return
    # Only the first message (a bare ephemeral key, no AEAD yet) can be forged from nothing;
    # the responder's reply must then use it without any raw cryptography error.
    assert stage == 0 and len(junk) >= 32
    try:
        resp.write_message(b"")
    except HandshakeError as exc:
        assert "low-order" in str(exc)


@settings(max_examples=100, deadline=None)
@given(junk=st.binary(max_size=200), seed=st.integers(0, 3))
def test_random_bytes_to_transport_decryptor_raise_channel_error(junk: bytes, seed: int) -> None:
    init, resp = _pair(seed)
    _advance(init, resp, 3)
    receive = resp.split().receive
    with pytest.raises(ChannelError):
        receive.decrypt_with_ad(b"", junk)
    assert receive.n == 0


def test_low_order_ephemeral_key_is_a_handshake_error() -> None:
    init, resp = _pair(7)
    resp.read_message(bytes(32))   # the all-zero point: every DH with it is zero
    with pytest.raises(HandshakeError, match="low-order"):
        resp.write_message(b"")


def _transcript(seed: int, flip: tuple[int, int] | None) -> None:
    """Run a handshake and two transport messages; flip one bit of message ``flip[0]``."""
    init, resp = _pair(seed)
    for i in range(3):
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        wire = bytearray(sender.write_message(b"hello %d" % i))
        if flip is not None and flip[0] == i:
            wire[flip[1] // 8 % len(wire)] ^= 1 << (flip[1] % 8)
        receiver.read_message(bytes(wire))
    ours, theirs = init.split(), resp.split()
    for i in (3, 4):
        wire = bytearray(ours.send.encrypt_with_ad(b"", b"frame %d" % i))
        if flip is not None and flip[0] == i:
            wire[flip[1] // 8 % len(wire)] ^= 1 << (flip[1] % 8)
        assert theirs.receive.decrypt_with_ad(b"", bytes(wire)) == b"frame %d" % i


def test_unflipped_transcript_completes() -> None:
    _transcript(1, None)


@settings(max_examples=200, deadline=None)
@given(message=st.integers(0, 4), bit=st.integers(0, 8 * 200))
def test_flipping_any_bit_of_any_message_fails(message: int, bit: int) -> None:
    # A flipped bit in message 1 (the cleartext ephemeral key) is caught when message 2 fails to
    # decrypt (the handshake hash differs); any other flip is caught by the message's own tag.
    with pytest.raises((HandshakeError, ChannelError)):
        _transcript(2, (message, bit))


def test_every_bit_of_the_first_two_messages_is_protected() -> None:
    for message in (0, 1):
        for bit in range(8 * 48):
            with pytest.raises(HandshakeError):
                _transcript(3, (message, bit))


def test_out_of_turn_use_is_a_usage_error() -> None:
    init, resp = _pair(4)
    with pytest.raises(UsageError, match="our turn"):
        init.read_message(b"x" * 32)
    with pytest.raises(UsageError, match="peer's turn"):
        resp.write_message(b"")
    with pytest.raises(UsageError, match="split"):
        init.split()
    _advance(init, resp, 3)
    with pytest.raises(UsageError, match="complete"):
        init.write_message(b"")
    init.split()
    with pytest.raises(UsageError, match="already"):
        init.split()


def test_oversized_messages() -> None:
    init, resp = _pair(5)
    with pytest.raises(UsageError, match="over 65535"):
        init.write_message(bytes(65535))
    init2, resp2 = _pair(5)
    with pytest.raises(HandshakeError, match="over 65535"):
        resp2.read_message(bytes(65536))


def test_nonce_2_64_minus_1_is_reserved() -> None:
    c = CipherState(bytes(32))
    c.set_nonce(MAX_NONCE - 1)
    wire = c.encrypt_with_ad(b"", b"last")
    with pytest.raises(UsageError, match="nonce is spent"):
        c.encrypt_with_ad(b"", b"one too many")
    d = CipherState(bytes(32))
    d.set_nonce(MAX_NONCE - 1)
    assert d.decrypt_with_ad(b"", wire) == b"last"
    with pytest.raises(ChannelError):
        d.decrypt_with_ad(b"", wire)


def test_rekey_changes_the_key_and_keeps_both_sides_in_step() -> None:
    a, b = CipherState(bytes(range(32))), CipherState(bytes(range(32)))
    before = a.encrypt_with_ad(b"", b"x")
    b.decrypt_with_ad(b"", before)
    a.rekey()
    wire = a.encrypt_with_ad(b"", b"y")
    with pytest.raises(ChannelError):
        b.decrypt_with_ad(b"", wire)
    b.rekey()
    assert b.decrypt_with_ad(b"", wire) == b"y"


def test_same_seed_same_bytes() -> None:
    def run(seed: int) -> list[bytes]:
        init, resp = _pair(seed)
        out = []
        for i in range(3):
            sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
            out.append(sender.write_message(b""))
            receiver.read_message(out[-1])
        out.append(init.handshake_hash)
        return out
    assert run(11) == run(11)
    assert run(11) != run(12)


def test_unsupported_protocol_names() -> None:
    for name in ("Noise_NN_25519_ChaChaPoly_SHA256", "Noise_XX_448_ChaChaPoly_SHA256",
                 "Noise_XX_25519_AESGCM_SHA256", "Noise_XX_25519_ChaChaPoly_SHA512", "garbage"):
        with pytest.raises(UsageError, match="unsupported Noise protocol"):
            HandshakeState(name, initiator=True, prologue=b"", static=KeyPair.from_private(bytes(32)),
                           randbytes=SeededEntropy(0))
