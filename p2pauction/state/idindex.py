"""The accepted ids as the gossip core's anti-entropy summary reads them, kept by the store.

The anti-entropy summary (``p2pauction.gossip.antientropy.PrefixSummary``) needs, for every
accepted id: membership, the ids under a hex prefix in sorted order, and acceptance (store)
order. Holding every id in the core's memory costs ~200 bytes per event and a scan of the whole
history at start; a store already holds them, indexed. What the store adds is one small table:
per ``BUCKET_DIGITS``-digit prefix of the id, the sum of the ids' fingerprints and their count,
written in the same transaction as the events, so the summary starts from 4,096 rows instead of
reading every id, and nothing per event stays in memory.

The fingerprint of an id is its last 16 hex digits as an integer (the prefix uses the first
digits: the two are independent); a bucket's fingerprint is the sum of its ids' mod 2**64.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from typing import Protocol

BUCKET_DIGITS = 3
MASK64 = (1 << 64) - 1


def id_fingerprint(event_id: str) -> int:
    return int(event_id[48:], 16)


class IdIndex(Protocol):
    """What a store answers about the ids it has committed (never the staged ones, except that
    SQLite reads its own open transaction: see SqliteStore)."""

    def has_id(self, event_id: str) -> bool: ...

    def ids_between(self, low: str, high: str) -> list[str]:
        """Every id with ``low <= id < high``, sorted."""
        ...

    def in_store_order(self, ids: Iterable[str]) -> list[str]:
        """The known ids among ``ids``, in commit order (a causal order)."""
        ...

    def earliest_between(self, low: str, high: str, limit: int) -> list[str]:
        """The ``limit`` first committed ids with ``low <= id < high``, in commit order."""
        ...

    def bucket_sums(self) -> dict[str, tuple[int, int]]:
        """Per ``BUCKET_DIGITS``-digit prefix holding ids: (fingerprint sum mod 2**64, count)."""
        ...


def bucket_deltas(ids: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Per bucket prefix: the (fingerprint sum, count) that ``ids`` add (sums not reduced)."""
    out: dict[str, tuple[int, int]] = {}
    for event_id in ids:
        prefix = event_id[:BUCKET_DIGITS]
        fp, count = out.get(prefix, (0, 0))
        out[prefix] = (fp + id_fingerprint(event_id), count + 1)
    return out


class SortedIds:
    """The in-memory IdIndex (MemoryStore's): a sorted list, a commit-order number per id and the
    bucket sums. ``copy.copy`` gives an independent copy (a test store snapshots it)."""

    __slots__ = ("_sorted", "_seq", "_buckets")

    def __init__(self) -> None:
        self._sorted: list[str] = []
        self._seq: dict[str, int] = {}
        self._buckets: dict[str, tuple[int, int]] = {}

    def __copy__(self) -> SortedIds:
        other = SortedIds()
        other._sorted = list(self._sorted)
        other._seq = dict(self._seq)
        other._buckets = dict(self._buckets)
        return other

    def add(self, event_id: str) -> None:
        """Record a committed id (callers add each id once)."""
        self._seq[event_id] = len(self._seq)
        insort(self._sorted, event_id)
        prefix = event_id[:BUCKET_DIGITS]
        fp, count = self._buckets.get(prefix, (0, 0))
        self._buckets[prefix] = ((fp + id_fingerprint(event_id)) & MASK64, count + 1)

    def has_id(self, event_id: str) -> bool:
        return event_id in self._seq

    def ids_between(self, low: str, high: str) -> list[str]:
        ids = self._sorted
        return ids[bisect_left(ids, low):bisect_left(ids, high)]

    def in_store_order(self, ids: Iterable[str]) -> list[str]:
        seq = self._seq
        return sorted((i for i in ids if i in seq), key=seq.__getitem__)

    def earliest_between(self, low: str, high: str, limit: int) -> list[str]:
        return heapq.nsmallest(limit, self.ids_between(low, high), key=self._seq.__getitem__)

    def bucket_sums(self) -> dict[str, tuple[int, int]]:
        return dict(self._buckets)


def sums_of(rows: Sequence[tuple[str, int, int, int]]) -> dict[str, tuple[int, int]]:
    """Bucket sums from stored rows (prefix, high-half sum, low-half sum, count): SQLite keeps the
    two 32-bit halves of the fingerprints summed apart, plain integers that cannot overflow its
    64-bit ones for 2**31 ids, where a 64-bit sum would."""
    return {str(p): (((int(hi) << 32) + int(lo)) & MASK64, int(n)) for p, hi, lo, n in rows}
