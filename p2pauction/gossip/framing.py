"""Length-prefixed JSON frames: 4-byte big-endian length, then a compact UTF-8 JSON object.

The length is checked against the limit as soon as the 4 header bytes arrive, before any body
byte is buffered, so a hostile header announcing 2**31 bytes costs nothing. Every decoded frame
is a JSON object with a string ``"t"`` (the message type); anything else is a :class:`FrameError`.
"""

from __future__ import annotations

import json
from typing import Any

from p2pauction.errors import FrameError

MAX_FRAME_BYTES = 1 << 20
HEADER_BYTES = 4

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise FrameError(f"frame contains the non-JSON constant {name}", reason="frame_json")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def encode_body(message: dict[str, Any]) -> bytes:
    """The JSON body of a frame (without the length header)."""
    return _encoder.encode(message).encode("utf-8")


def encode_frame(message: dict[str, Any]) -> bytes:
    """4-byte big-endian length + compact UTF-8 JSON of ``message``.

    Raises FrameError when the encoded body would be over :data:`MAX_FRAME_BYTES`: a local bug
    (builders bound every list), but the remote would reject such a frame anyway.
    """
    body = encode_body(message)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"outgoing frame of {len(body)} bytes is over {MAX_FRAME_BYTES}",
                         reason="frame_too_big")
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse one frame body; the result is a dict with a str ``"t"``."""
    try:
        text = body.decode("utf-8")
        message = _decoder.decode(text)
    except FrameError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and Python's int-digit limit on huge numbers.
        raise FrameError(f"frame body is not UTF-8 JSON: {str(exc)[:80]}", reason="frame_json") from None
    if not isinstance(message, dict):
        raise FrameError("frame body is not a JSON object", reason="frame_shape")
    if not isinstance(message.get("t"), str):
        raise FrameError('frame has no string "t" (message type)', reason="frame_shape")
    return message


class FrameDecoder:
    """Incremental decoder for one connection's byte stream.

    Never holds more than ``max_size + 4`` bytes: the header is validated before the body is
    buffered, and complete frames are consumed at once. After a FrameError the stream is
    unusable (framing is lost); the caller closes the connection.
    """

    __slots__ = ("max_size", "_buf", "_need")

    def __init__(self, max_size: int = MAX_FRAME_BYTES) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._need = -1  # body length of the frame being read; -1 while reading the header

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def partial(self) -> bool:
        """True while a frame has begun (header or body bytes) but is not complete."""
        return self._need >= 0 or bool(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Consume ``data``; return the frames it completes, decoded, in order."""
        return [decode_body(body) for body in self.split(data)]

    def split(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the bodies of the frames it completes, in order.

        Only the framing is checked here; the caller decodes each body (see :func:`decode_body`),
        so a valid frame ahead of a malformed one in the same chunk is still handled.
        """
        bodies: list[bytes] = []
        n = len(data)
        if self._need < 0 and not self._buf and n > HEADER_BYTES:
            # Fast path: a chunk that is exactly one whole frame (the usual case).
            need = int.from_bytes(data[:HEADER_BYTES], "big")
            if need + HEADER_BYTES == n and 0 < need <= self.max_size:
                bodies.append(data[HEADER_BYTES:])
                return bodies
        return self.split_prefix(data, 0)[0]

    def split_prefix(self, data: bytes, max_frames: int) -> tuple[list[bytes], int]:
        """Like :meth:`split`, but stop after ``max_frames`` complete bodies (0: no limit) and
        also return how many bytes of ``data`` were consumed: the caller feeds the rest later,
        e.g. after raising ``max_size`` once a handshake completed mid-chunk."""
        bodies: list[bytes] = []
        n = len(data)
        view = memoryview(data)
        pos = 0
        while pos < n:
            if self._need < 0:
                take = min(HEADER_BYTES - len(self._buf), n - pos)
                self._buf += view[pos:pos + take]
                pos += take
                if len(self._buf) < HEADER_BYTES:
                    break
                need = int.from_bytes(self._buf, "big")
                self._buf.clear()
                if need == 0:
                    raise FrameError("frame of length 0", reason="frame_empty")
                if need > self.max_size:
                    raise FrameError(f"frame announces {need} bytes, over the {self.max_size}-byte limit",
                                     reason="frame_too_big")
                self._need = need
                continue
            take = min(self._need - len(self._buf), n - pos)
            if not self._buf and take == self._need:
                body: bytes = bytes(view[pos:pos + take])  # whole body in this chunk: no copy into buf
            else:
                self._buf += view[pos:pos + take]
                if len(self._buf) < self._need:
                    pos += take
                    break
                body = bytes(self._buf)
                self._buf.clear()
            pos += take
            self._need = -1
            bodies.append(body)
            if len(bodies) == max_frames:
                break
        return bodies, pos

