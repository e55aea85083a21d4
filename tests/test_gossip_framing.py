"""Frames: length prefix checked before buffering, any bytes decode or raise FrameError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.errors import DecodeError, FrameError, ProtocolError
from p2pauction.gossip.framing import MAX_FRAME_BYTES, FrameDecoder, encode_frame
from p2pauction.gossip.messages import MESSAGE_TYPES, parse_message

json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
messages = st.builds(lambda t, extra: {**extra, "t": t}, st.text(min_size=1, max_size=12),
                     st.dictionaries(st.text(max_size=8), json_values, max_size=4))


def test_encode_layout() -> None:
    frame = encode_frame({"t": "ping", "n": 7})
    body = b'{"t":"ping","n":7}'
    assert frame == len(body).to_bytes(4, "big") + body


def test_unicode_is_utf8_not_escaped() -> None:
    frame = encode_frame({"t": "x", "s": "Pic#1 — café"})
    assert "café".encode() in frame
    assert FrameDecoder().feed(frame) == [{"t": "x", "s": "Pic#1 — café"}]


@given(st.lists(messages, min_size=1, max_size=5), st.data())
@settings(max_examples=150, deadline=None)
def test_split_feeds_give_the_same_frames(msgs: list[dict[str, Any]], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    out: list[dict[str, Any]] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[prev:cut]))
        prev = cut
    assert out == msgs
    assert decoder.buffered == 0


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_any_bytes_decode_or_raise_frame_error(data: bytes) -> None:
    decoder = FrameDecoder(max_size=512)
    try:
        frames = decoder.feed(data)
    except FrameError:
        return
    for frame in frames:
        assert isinstance(frame, dict) and isinstance(frame["t"], str)
    assert decoder.buffered <= 512 + 4


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_any_body_decodes_or_raises(body: bytes) -> None:
    decoder = FrameDecoder()
    try:
        frames = decoder.feed(len(body).to_bytes(4, "big") + body)
    except FrameError:
        return
    assert len(frames) == (1 if body else 0)


@given(messages)
@settings(max_examples=300, deadline=None)
def test_any_frame_parses_or_raises_protocol_error(msg: dict[str, Any]) -> None:
    try:
        parse_message(msg)
    except ProtocolError:
        pass


@pytest.mark.parametrize("t", sorted(MESSAGE_TYPES))
def test_known_types_reject_garbage_fields(t: str) -> None:
    garbage = {"t": t, "ids": ["x"], "peers": [[1, 2]], "n": "x", "key": "zz", "r": 5, "e": 3,
               "es": [1], "p": [9], "l": [[1]], "sig": "00", "net": 5, "nonce": "x"}
    try:
        msg = parse_message(garbage)
    except DecodeError as exc:
        assert str(exc)  # a message a person can act on
        return
    assert msg.T in ("error", "heartbeat", "prune")  # the types with no required field


ID_A, ID_B = "a" * 64, "b" * 64


@pytest.mark.parametrize("ids", [[f"{ID_A},{ID_B}"], [f"{ID_A},{ID_B}", ""], [ID_A, ID_B.upper()],
                                 [ID_A, 7], [ID_A + "0"], [ID_A[:-1]], [ID_A, ""], [f"{ID_A},"]])
def test_id_lists_hold_exactly_64_hex_ids(ids: list[Any]) -> None:
    with pytest.raises(DecodeError, match="64-hex"):
        parse_message({"t": "ihave", "ids": ids})


@given(st.lists(st.sampled_from([ID_A, ID_B, "c" * 64]), max_size=20))
def test_valid_id_lists_parse(ids: list[str]) -> None:
    assert parse_message({"t": "want", "ids": ids}).ids == tuple(ids)  # type: ignore[attr-defined]


def test_oversize_header_raises_before_buffering() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameError, match="over the"):
        decoder.feed((2**31).to_bytes(4, "big") + b"{")
    assert decoder.buffered == 0


def test_oversize_detected_with_header_alone_in_pieces() -> None:
    decoder = FrameDecoder(max_size=100)
    assert decoder.feed(b"\x00\x00") == []
    with pytest.raises(FrameError):
        decoder.feed(b"\x00\x65")  # 101
    assert decoder.buffered == 0


def test_zero_length_is_an_error() -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_limit_is_exact() -> None:
    decoder = FrameDecoder(max_size=64)
    body = json.dumps({"t": "x", "pad": "a" * 40}, separators=(",", ":")).encode()
    body = body[:-2] + b"a" * (64 - len(body)) + body[-2:]
    assert len(body) == 64
    assert decoder.feed(len(body).to_bytes(4, "big") + body)[0]["t"] == "x"
    with pytest.raises(FrameError):
        FrameDecoder(max_size=63).feed(len(body).to_bytes(4, "big") + body)


@pytest.mark.parametrize("body", [b"[1,2]", b'{"t":5}', b'{"x":"y"}', b"\xff\xfe", b'{"t":"a",', b"NaN",
                                  b'{"t":"a","n":NaN}', b"[" * 5000 + b"]" * 5000, b"1" * 5000])
def test_bad_bodies(body: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(len(body).to_bytes(4, "big") + body)


def test_encode_refuses_oversize() -> None:
    with pytest.raises(FrameError):
        encode_frame({"t": "x", "pad": "a" * MAX_FRAME_BYTES})


def test_split_returns_the_bodies_of_whole_frames_and_keeps_the_rest() -> None:
    a, b = encode_frame({"t": "a"}), encode_frame({"t": "bb", "x": 1})
    decoder = FrameDecoder()
    assert decoder.split(a) == [a[4:]]                    # one whole frame (the fast path)
    assert decoder.split(a + b[:6]) == [a[4:]]            # a frame and the start of the next
    assert decoder.buffered == 2 and decoder.split(b[6:]) == [b[4:]]
    assert decoder.split(b"\x00\x00\x00\x06{\"t\":") == [] and decoder.split(b"1") == [b'{"t":1']
