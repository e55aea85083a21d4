"""Rateless IBLT set reconciliation of event ids (sans-IO, pure, deterministic).

After Yang, Gilad and Alizadeh, "Practical Rateless Set Reconciliation" (SIGCOMM 2024); our own
code, with the index mapping of the paper (and of the authors' Go library) and a decoder hardened
for hostile input. Two peers holding sets A and B of 32-byte event ids find A \\ B and B \\ A by
sending about 1.35 coded symbols per difference, whatever the size of A and B.

The construction
----------------
Every item (an event id ``x``) gets, from a keyed hash of ``x`` (BLAKE2b, key = the *salt*),
a 64-bit *checksum* ``h(x)`` and a 64-bit *walk seed*. The seed drives a pseudo-random walk over
coded-symbol indices 0 = i0 < i1 < i2 < ...; index ``i`` is on an item's walk with probability
``1 / (1 + i/2)`` (every item is in symbol 0, about half of them in symbol 2, ...). Coded symbol
``i`` of a set is the triple (XOR of the ids whose walk visits ``i``, XOR of their checksums, their
count). The sequence is infinite (rateless): a peer sends a prefix, longer until the other decodes.

The receiver subtracts its own symbols from the sender's, index by index: what remains is the
coded symbols of the symmetric difference (items only the sender has count +1, items only the
receiver has count -1). A symbol whose count is +-1 and whose checksum matches the checksum of
its id field is *pure*: it holds exactly one item, which is recovered and peeled (XORed out of
every received symbol on its walk, and of every later one as it arrives), which makes other
symbols pure, and so on: linear time. Decoding is complete when every received symbol is empty.

Salt (why a key at all): the walk decides which items share symbols. If anyone can compute it,
an attacker can mine event ids whose walks coincide on a long prefix (a birthday search: two
ids that share all of their first 4,096 indices take about 2 x 10^6 tries); two such ids in a
difference never peel apart, and that round cannot finish. With a key the attacker does not
know when it picks its ids, it cannot. The module takes the salt as a parameter; both peers of a
session must use the same. :func:`network_salt` derives a fixed salt from the network id: cheap
(one maintained :class:`SymbolCache` per node) but public, so it relies on the fallback of
docs/protocol.md ("anti-entropy v2"): a decoder that gives up (:attr:`DecodeStatus.FAILED`)
still returns what it recovered, and the rest is reconciled otherwise (the prefix tree, or a
per-session salt: :func:`encode` from scratch, 15-30x the CPU of hashing every id once).

Cost and state
--------------
- :class:`SymbolCache` keeps the first ``capacity`` coded symbols of a growing set up to date:
  adding an id costs ``O(log capacity)`` (about ``2 ln(capacity / 2) + 1`` symbol updates). Its
  memory is ``O(capacity)``, not ``O(set size)``: the set itself lives in the store.
- :func:`encode` computes a prefix from scratch: ``O(n log m)`` for ``n`` ids and ``m`` symbols.
- :class:`Decoder` holds the symbols it received and the items it recovered: ``O(max_symbols)``
  memory, and ``O(max_symbols log max_symbols)`` work in all, for any input.

Wire format of a batch of coded symbols (:class:`SymbolBatch`), all integers big-endian::

    offset  size  field
    0       1     version = 1
    1       4     start: index of the batch's first symbol (u32)
    5       2     n: number of symbols, 1..MAX_BATCH_SYMBOLS (u16)
    7       41*n  n symbols, each: id_xor (32 bytes) | hash_xor (8 bytes, u64) | count mod 256 (u8)

The count travels modulo 256 and the decoder does all its count arithmetic modulo 256: a symbol
holding one item still reads +1 or -1, and an empty one 0, whatever the set sizes (honest counts
only matter through their difference, and peeling changes them by one). The decoder's size
estimate (:meth:`Decoder.estimate`) unwraps them with the sender's set size, sent once in the
round's opening message. A batch is exactly ``7 + 41 n`` bytes; anything else is a
:class:`ReconcileError`.

Ids in this API are the project's event ids: 64 lowercase hex characters.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from p2pauction.errors import ReconcileError, UsageError

ID_BYTES = 32
CHECKSUM_BYTES = 8
COUNT_BYTES = 1
SYMBOL_BYTES = ID_BYTES + CHECKSUM_BYTES + COUNT_BYTES  # 41
BATCH_HEADER_BYTES = 7
BATCH_VERSION = 1
MAX_BATCH_SYMBOLS = 16_384           # 656 KiB: under the 1 MiB frame limit
SALT_BYTES = 16
DEFAULT_CAPACITY = 4_096             # symbols a node keeps cached: decodes d up to ~2,900 per round
_COUNT_MOD = 1 << 8
_COUNT_HALF = 1 << 7
_M64 = (1 << 64) - 1
_M256 = (1 << 256) - 1
_TWO64 = float(1 << 64)
_GAMMA = 0x9E3779B97F4A7C15
_PERSON = b"p2pa/riblt/v1"


# --- item hashing and the index walk --------------------------------------------------------------

def network_salt(net: str) -> bytes:
    """A fixed salt for network ``net`` (public: see the module docstring for what that means)."""
    return hashlib.blake2b(net.encode("utf-8"), digest_size=SALT_BYTES, person=b"p2pa/riblt/salt").digest()


class ItemHasher:
    """The keyed hash of an id: ``(checksum, walk seed)``, two independent 64-bit values."""

    __slots__ = ("salt", "_base")

    def __init__(self, salt: bytes) -> None:
        if not isinstance(salt, bytes) or not 1 <= len(salt) <= 64:
            raise UsageError(f"a reconciliation salt is 1..64 bytes (use {SALT_BYTES}), got {salt!r:.40}")
        self.salt = salt
        self._base = hashlib.blake2b(digest_size=16, key=salt, person=_PERSON)

    def __call__(self, item: int) -> tuple[int, int]:
        h = self._base.copy()
        h.update(item.to_bytes(ID_BYTES, "big"))
        v = int.from_bytes(h.digest(), "big")
        return v >> 64, v & _M64


def _next_index(state: int, index: int) -> tuple[int, int]:
    """One step of an item's walk: the next PRNG state and the next index after ``index``.

    The PRNG is splitmix64. The gap follows the paper: given the walk is at ``i``, the next index
    is past ``j`` with probability ``((i + 1.5) / (j + 1.5))**2``, so ``gap = ceil((i + 1.5) *
    (u**-0.5 - 1))`` for ``u`` uniform in (0, 1], which makes ``P(i on the walk) ~ 1/(1 + i/2)``.
    IEEE double arithmetic is exact-rounded everywhere, so every platform walks the same way."""
    state = (state + _GAMMA) & _M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    gap = math.ceil((index + 1.5) * (1.0 / math.sqrt((z + 1) / _TWO64) - 1.0))
    return state, index + (gap if gap > 0 else 1)


def walk(seed: int, limit: int) -> list[int]:
    """The indices below ``limit`` that an item with walk seed ``seed`` maps to (always 0 first)."""
    out: list[int] = []
    state, index = seed, 0
    while index < limit:
        out.append(index)
        state, index = _next_index(state, index)
    return out


def parse_id(event_id: str) -> int:
    """An event id (64 hex chars) as the 256-bit integer the symbols XOR."""
    if not isinstance(event_id, str) or len(event_id) != 2 * ID_BYTES:
        raise UsageError(f"an event id is 64 hex characters, got {event_id!r:.80}")
    try:
        return int(event_id, 16)
    except ValueError:
        raise UsageError(f"an event id is 64 hex characters, got {event_id!r:.80}") from None


def format_id(item: int) -> str:
    return f"{item:064x}"


# --- coded symbols and their wire form ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CodedSymbol:
    """One coded symbol: XOR of ids, XOR of their checksums, and their count.

    ``count`` is the full count in memory; on the wire it is sent modulo 256."""

    id_xor: int
    hash_xor: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.id_xor <= _M256 or not 0 <= self.hash_xor <= _M64:
            raise UsageError("a coded symbol's id_xor is 256 bits and its hash_xor 64 bits")


@dataclass(frozen=True, slots=True)
class SymbolBatch:
    """Coded symbols ``start .. start + len(symbols) - 1`` of one set's sequence."""

    start: int
    symbols: tuple[CodedSymbol, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.start < 1 << 32:
            raise UsageError(f"a batch starts at a symbol index 0..2**32-1, got {self.start}")
        if not 1 <= len(self.symbols) <= MAX_BATCH_SYMBOLS:
            raise UsageError(f"a batch holds 1..{MAX_BATCH_SYMBOLS} symbols, got {len(self.symbols)}")

    @property
    def stop(self) -> int:
        return self.start + len(self.symbols)

    def to_bytes(self) -> bytes:
        head = bytes([BATCH_VERSION]) + self.start.to_bytes(4, "big") + len(self.symbols).to_bytes(2, "big")
        return head + b"".join(
            s.id_xor.to_bytes(ID_BYTES, "big") + s.hash_xor.to_bytes(CHECKSUM_BYTES, "big")
            + (s.count % _COUNT_MOD).to_bytes(COUNT_BYTES, "big")
            for s in self.symbols)

    @classmethod
    def from_bytes(cls, data: bytes) -> SymbolBatch:
        """Parse a batch; anything but exactly the format above is a :class:`ReconcileError`."""
        if len(data) < BATCH_HEADER_BYTES:
            raise ReconcileError(f"a symbol batch has a {BATCH_HEADER_BYTES}-byte header, got {len(data)} bytes",
                                 reason="riblt_malformed")
        if data[0] != BATCH_VERSION:
            raise ReconcileError(f"symbol batch version {data[0]} is not {BATCH_VERSION}", reason="riblt_malformed")
        start = int.from_bytes(data[1:5], "big")
        n = int.from_bytes(data[5:7], "big")
        if not 1 <= n <= MAX_BATCH_SYMBOLS or len(data) != BATCH_HEADER_BYTES + SYMBOL_BYTES * n:
            raise ReconcileError(f"a symbol batch of {n} symbols must be {BATCH_HEADER_BYTES} + {SYMBOL_BYTES}*n "
                                 f"bytes (n 1..{MAX_BATCH_SYMBOLS}), got {len(data)}", reason="riblt_malformed")
        symbols = []
        for at in range(BATCH_HEADER_BYTES, len(data), SYMBOL_BYTES):
            symbols.append(CodedSymbol(int.from_bytes(data[at:at + 32], "big"),
                                       int.from_bytes(data[at + 32:at + 40], "big"),
                                       data[at + 40]))
        return cls(start, tuple(symbols))


def batch_bytes(n: int) -> int:
    """The size on the wire of a batch of ``n`` symbols."""
    return BATCH_HEADER_BYTES + SYMBOL_BYTES * n


# --- encoders -------------------------------------------------------------------------------------

class SymbolPrefix:
    """The first ``len(self)`` coded symbols of a set, frozen (a copy: later adds do not show)."""

    __slots__ = ("hasher", "_sums", "_hashes", "_counts")

    def __init__(self, hasher: ItemHasher, sums: list[int], hashes: list[int], counts: list[int]) -> None:
        self.hasher = hasher
        self._sums, self._hashes, self._counts = sums, hashes, counts

    def __len__(self) -> int:
        return len(self._sums)

    def symbol(self, index: int) -> CodedSymbol:
        return CodedSymbol(self._sums[index], self._hashes[index], self._counts[index])

    def batch(self, start: int, count: int) -> SymbolBatch:
        """Symbols ``start .. start + count - 1`` (``count`` is cut to what the prefix holds)."""
        stop = min(start + count, len(self._sums))
        if not 0 <= start < stop:
            raise UsageError(f"symbols from {start} are not in this prefix of {len(self._sums)}")
        return SymbolBatch(start, tuple(map(CodedSymbol, self._sums[start:stop], self._hashes[start:stop],
                                            self._counts[start:stop])))


def encode(event_ids: Iterable[str], salt: bytes, count: int) -> SymbolPrefix:
    """The first ``count`` coded symbols of a set, from scratch: ``O(n log count)``."""
    cache = SymbolCache(salt, count)
    cache.add_many(event_ids)
    return cache.snapshot()


class SymbolCache:
    """A maintained encoder: the first ``capacity`` coded symbols of a set that only grows.

    ``add`` updates the symbols on the id's walk below ``capacity`` (about ``2 ln(capacity/2)+1``
    of them), so serving a reconciliation never re-encodes the history. ``remove`` exists for
    completeness (tests, a store that prunes). The cache does not remember the ids: adding the same
    id twice counts it twice, so the caller adds each accepted event exactly once."""

    __slots__ = ("hasher", "capacity", "size", "_sums", "_hashes", "_counts")

    def __init__(self, salt: bytes, capacity: int = DEFAULT_CAPACITY) -> None:
        if not 1 <= capacity <= 1 << 24:
            raise UsageError(f"a symbol cache holds 1..2**24 symbols, got {capacity}")
        self.hasher = ItemHasher(salt)
        self.capacity = capacity
        self.size = 0
        self._sums = [0] * capacity
        self._hashes = [0] * capacity
        self._counts = [0] * capacity

    def add(self, event_id: str) -> None:
        self._apply(parse_id(event_id), 1)

    def remove(self, event_id: str) -> None:
        self._apply(parse_id(event_id), -1)

    def add_many(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self._apply(parse_id(event_id), 1)

    def _apply(self, item: int, direction: int) -> None:
        checksum, seed = self.hasher(item)
        sums, hashes, counts, limit = self._sums, self._hashes, self._counts, self.capacity
        sqrt, ceil = math.sqrt, math.ceil
        state, index = seed, 0
        while index < limit:
            sums[index] ^= item
            hashes[index] ^= checksum
            counts[index] += direction
            # _next_index inlined: this loop is the cost of keeping the cache (one call per step
            # would be a third more); test_cache_walks_like_next_index pins the two together.
            state = (state + _GAMMA) & _M64
            z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
            z ^= z >> 31
            gap = ceil((index + 1.5) * (1.0 / sqrt((z + 1) / _TWO64) - 1.0))
            index += gap if gap > 0 else 1
        self.size += direction

    def copy(self) -> SymbolCache:
        """An independent cache of the same set (``O(capacity)``)."""
        twin = SymbolCache(self.hasher.salt, self.capacity)
        twin.size = self.size
        twin._sums, twin._hashes, twin._counts = self._sums[:], self._hashes[:], self._counts[:]
        return twin

    def snapshot(self, count: int | None = None) -> SymbolPrefix:
        """A frozen copy of the first ``count`` symbols (default all): what one session serves or
        decodes against, unchanged by events accepted while it runs. Costs ``O(count)``."""
        n = self.capacity if count is None else max(0, min(count, self.capacity))
        return SymbolPrefix(self.hasher, self._sums[:n], self._hashes[:n], self._counts[:n])


# --- decoder --------------------------------------------------------------------------------------

class DecodeStatus(enum.Enum):
    NEED_MORE = "need_more"   # not every received symbol is decoded yet: ask for more
    DONE = "done"             # every received symbol decoded: the difference is complete
    FAILED = "failed"         # max_symbols received without decoding: fall back (partial results stand)


def _wrap(count: int) -> int:
    """``count`` modulo 256 as a signed value in -128..127."""
    return (count + _COUNT_HALF) % _COUNT_MOD - _COUNT_HALF


class Decoder:
    """Decodes a remote set's symbol stream against our own symbols (``local``).

    Feed :meth:`add` the batches in order (each must start where the previous stopped). After
    each, :attr:`status` says whether the difference is complete; :meth:`next_request` suggests how
    many symbols to ask for next. :attr:`remote_only` (ids the remote has and we lack) and
    :attr:`local_only` (ids we have and the remote lacks) grow as items are recovered; once DONE
    they are the whole difference. Recovered ids are what the *remote's symbols say*: a hostile
    peer can claim any id, so serve only events you hold and treat wanted ids as hints.

    ``remote_size`` (the sender's set size, if it told us) sharpens :meth:`estimate` only.

    Bounded for any input: at most ``max_symbols`` symbols (more is a ReconcileError), at most one
    recovered item per received symbol (more cannot come from an honest stream: ReconcileError).
    With ``remote_size`` it also gives up (FAILED) once it holds ``4 x estimate + 64`` symbols:
    a difference that will not peel (ids mined to share their walks) then costs a few times
    its size, not ``max_symbols``."""

    def __init__(self, local: SymbolPrefix, *, max_symbols: int | None = None,
                 remote_size: int | None = None) -> None:
        limit = len(local) if max_symbols is None else max_symbols
        if not 1 <= limit <= len(local):
            raise UsageError(f"max_symbols must be 1..{len(local)} (the local prefix), got {max_symbols}")
        if remote_size is not None and not 0 <= remote_size < 1 << 32:
            raise UsageError(f"remote_size is the sender's set size, a u32 on the wire; got {remote_size}")
        self.max_symbols = limit
        self._local = local
        self._hasher = local.hasher
        self._size_diff = None if remote_size is None else remote_size - local._counts[0]
        self._sums: list[int] = []
        self._hashes: list[int] = []
        self._counts: list[int] = []                     # signed, modulo 256
        self._arrival_counts: list[int] = []             # count difference as received (for estimate)
        self._nonempty = 0
        self._found: dict[int, int] = {}                 # item -> +1 remote only, -1 local only
        self._walks: list[tuple[int, int, int, int, int]] = []  # heap: (next index, item, checksum, state, delta)
        self._candidates: list[int] = []
        self._estimate = 0.0

    @property
    def received(self) -> int:
        return len(self._sums)

    @property
    def status(self) -> DecodeStatus:
        m = len(self._sums)
        if m and self._nonempty == 0:
            return DecodeStatus.DONE
        if m >= self.max_symbols or (self._size_diff is not None and m >= STALL_FACTOR * self._estimate + STALL_SLACK):
            return DecodeStatus.FAILED
        return DecodeStatus.NEED_MORE

    @property
    def remote_only(self) -> list[str]:
        return [format_id(x) for x, side in self._found.items() if side > 0]

    @property
    def local_only(self) -> list[str]:
        return [format_id(x) for x, side in self._found.items() if side < 0]

    def add(self, batch: SymbolBatch) -> DecodeStatus:
        """Subtract our symbols from the batch, peel what became pure, and say where we stand."""
        if batch.start != len(self._sums):
            raise ReconcileError(f"symbol batch starts at {batch.start}, expected {len(self._sums)}",
                                 reason="riblt_sequence")
        if batch.stop > self.max_symbols:
            raise ReconcileError(f"symbols up to {batch.stop} are over the limit of {self.max_symbols}",
                                 reason="riblt_limit")
        for symbol in batch.symbols:
            self._receive(symbol)
        self._peel()
        self._estimate = self._compute_estimate()
        return self.status

    def _receive(self, symbol: CodedSymbol) -> None:
        index = len(self._sums)
        local = self._local
        s = symbol.id_xor ^ local._sums[index]
        h = symbol.hash_xor ^ local._hashes[index]
        c = _wrap(symbol.count - local._counts[index])
        self._arrival_counts.append(c)
        walks = self._walks
        while walks and walks[0][0] == index:     # peel recovered items from the new symbol too
            _, item, checksum, state, delta = walks[0]
            s ^= item
            h ^= checksum
            c = _wrap(c + delta)
            state, nxt = _next_index(state, index)
            heapq.heapreplace(walks, (nxt, item, checksum, state, delta))
        self._sums.append(s)
        self._hashes.append(h)
        self._counts.append(c)
        if s or h or c:
            self._nonempty += 1
            if c == 1 or c == -1:
                self._candidates.append(index)

    def _peel(self) -> None:
        sums, hashes, counts, candidates = self._sums, self._hashes, self._counts, self._candidates
        received = len(sums)
        while candidates:
            index = candidates.pop()
            side = counts[index]
            if side != 1 and side != -1:
                continue
            item = sums[index]
            checksum, seed = self._hasher(item)
            if checksum != hashes[index]:
                continue
            if item in self._found or len(self._found) >= received or walk(seed, index + 1)[-1] != index:
                raise ReconcileError("coded symbols decode to a repeated item, to more items than symbols, "
                                     "or to an item off its own walk: no honest set produces that",
                                     reason="riblt_inconsistent")
            self._found[item] = side
            state, at = seed, 0
            while at < received:
                was = sums[at] or hashes[at] or counts[at]
                sums[at] ^= item
                hashes[at] ^= checksum
                c = _wrap(counts[at] - side)
                counts[at] = c
                now = sums[at] or hashes[at] or c
                if was and not now:
                    self._nonempty -= 1
                elif now and not was:
                    self._nonempty += 1
                if c == 1 or c == -1:
                    candidates.append(at)
                state, at = _next_index(state, at)
            heapq.heappush(self._walks, (at, item, checksum, state, -side))

    def lower_bound(self) -> int:
        """A certain lower bound of the difference size: the items recovered so far, and
        ``abs(|A| - |B|)`` when the sender told us its size (``remote_size``)."""
        return max(len(self._found), abs(self._size_diff) if self._size_diff is not None else 0)

    def estimate(self) -> float:
        """:meth:`_compute_estimate` as of the last batch."""
        return self._estimate

    def _compute_estimate(self) -> float:
        """An estimate of the difference size ``d`` from the symbols' counts, before decoding.

        Symbol ``i``'s count difference is (#remote-only - #local-only items on it): mean
        ``c0 p``, variance ``d p (1 - p)`` with ``p = 1/(1 + i/2)`` and ``c0 = |A| - |B|``.
        Each received count (modulo 256) is unwrapped to the value nearest its mean, and the sum of
        squared deviations over the variance weights gives ``d``. Needs ``remote_size`` (for
        ``c0``; without it this is only :meth:`lower_bound`). Relative error about
        ``1.1 / ln(m/2)`` after ``m`` symbols: a guide for the request size, never trusted."""
        counts = self._arrival_counts
        c0 = self._size_diff
        if c0 is None or not counts:
            return float(self.lower_bound())
        deviation = weight = 0.0
        for i in range(1, len(counts)):
            p = 2.0 / (i + 2)
            mean = c0 * p
            c = counts[i] + _COUNT_MOD * round((mean - counts[i]) / _COUNT_MOD)
            deviation += (c - mean) ** 2
            weight += p * (1 - p)
        return max(float(self.lower_bound()), deviation / weight if weight else 0.0)

    def next_request(self) -> int:
        """How many more symbols to ask for (0 once DONE or FAILED).

        The largest of: 5% more than received (a large difference takes O(log d) round trips and
        overshoots by at most 5%); :meth:`lower_bound` (decoding needs at least one symbol per
        item); 1.3 x :meth:`estimate` (decoding needs about 1.4 symbols per item), at most 8x
        what was received. Without ``remote_size``: double. Tuned on benchmarks/reconcile.py
        (growth 3-8% and jump 1.0-1.3 all land within 4% of the same bytes; this has the fewest
        round trips)."""
        if self.status is not DecodeStatus.NEED_MORE:
            return 0
        m = len(self._sums)
        if self._size_diff is None:
            want = 2 * m
        else:
            want = max(m + max(1, math.ceil(GROWTH * m)), self.lower_bound(),
                       min(int(ESTIMATE_JUMP * self.estimate()), JUMP_CAP * m))
        return min(want, self.max_symbols) - m


STALL_FACTOR = 4     # status FAILED once received >= 4 x estimate + 64 (with remote_size): a
STALL_SLACK = 64     # stream that will not decode (mined ids that never peel apart, garbage)
                     # stops long before max_symbols; honest rounds need 1-3 x d (+ a few)
GROWTH = 0.05        # next_request: grow by at least this fraction
ESTIMATE_JUMP = 1.3  # ... or jump to this multiple of the estimated difference (decoding needs ~1.4 d)
JUMP_CAP = 8         # ... but at most this multiple of what was received
