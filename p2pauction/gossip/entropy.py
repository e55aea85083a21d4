"""Entropy sources for secrets (Noise static and ephemeral keys).

The sans-IO core never calls ``os.urandom``: it takes a :data:`RandBytes` callable. The asyncio
adapter passes ``os.urandom``; the simulator and the tests pass a :class:`SeededEntropy`, so a run
is a pure function of its seed. The protocol's ``random.Random`` is for protocol *choices* only
(whom to dial, jitter), never for secrets: its state can be recovered from its outputs.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from p2pauction.errors import UsageError

RandBytes = Callable[[int], bytes]
"""``randbytes(n)`` returns ``n`` bytes; in production ``os.urandom`` (the OS CSPRNG)."""


class SeededEntropy:
    """A deterministic byte stream for simulations and tests: SHA-256(seed || counter) blocks.

    Not a secret source (anyone who knows the seed knows every key): only for reproducible runs.
    Two instances with the same seed return the same bytes for the same sequence of calls.
    """

    __slots__ = ("_seed", "_counter", "_buffer")

    def __init__(self, seed: bytes | int) -> None:
        if isinstance(seed, int):
            if seed < 0:
                raise UsageError("an entropy seed must be a non-negative integer or bytes")
            seed = seed.to_bytes((seed.bit_length() + 7) // 8 or 1, "big")
        self._seed = b"p2pauction-seeded-entropy\0" + bytes(seed)
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        if n < 0:
            raise UsageError(f"cannot draw {n} random bytes")
        while len(self._buffer) < n:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
