"""The stores' index of accepted ids (idindex.IdIndex) and the anti-entropy summary read over it.

The summary over a store must answer exactly as the summary that holds every id itself (the wire
and the simulator's traces depend on it), while the store keeps only bucket sums beside its
events, written in the event's own transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pauction.errors import StoreWriteError, UsageError
from p2pauction.gossip.antientropy import HEX, PrefixSummary
from p2pauction.state.events import Event
from p2pauction.state.idindex import IdIndex, SortedIds
from p2pauction.state.store import MemoryStore, SqliteStore
from tests.state_helpers import as_before_table


@dataclass(frozen=True)
class _Stored:
    """What a store's append reads of an event (the index does not care what the event says)."""

    id: str
    auction_id: str
    raw: bytes


def _events(ids: Sequence[str]) -> list[Event]:
    return cast(list[Event], [_Stored(i, "a" * 64, i.encode()) for i in ids])


def _ids(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def _memory_summary(ids: Sequence[str], depth: int = 4) -> PrefixSummary:
    summary = PrefixSummary(depth)
    summary.add_many(ids)
    return summary


def _prefixes(depth: int) -> list[str]:
    out, level = [""], [""]
    for _ in range(depth):
        level = [p + h for p in level for h in HEX]
        out += level
    return out


def _same_answers(a: PrefixSummary, b: PrefixSummary, probes: Sequence[str]) -> None:
    assert a.root() == b.root() and len(a) == len(b)
    for prefix in _prefixes(2) + [p[:3] for p in probes] + [p[:4] for p in probes]:
        assert a.bucket(prefix) == b.bucket(prefix), prefix
        assert a.ids_in(prefix) == b.ids_in(prefix), prefix
        if len(prefix) < a.depth:
            assert a.node(prefix) == b.node(prefix), prefix
    assert a.in_store_order(reversed(probes)) == b.in_store_order(reversed(probes))
    assert a.earliest_in(["", "0"], 7) == b.earliest_in(["", "0"], 7)
    assert a.earliest_in(["f", "3a"], 3) == b.earliest_in(["f", "3a"], 3)
    for i in probes:
        assert (i in a) == (i in b)


ids_lists = st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=120, unique=True)


@settings(max_examples=40, deadline=None)
@given(ids=ids_lists, split=st.integers(0, 120), absent=st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex),
                                                                   max_size=5))
def test_summary_over_either_store_answers_as_the_one_holding_every_id(tmp_path_factory: Any, ids: list[str],
                                                                       split: int, absent: list[str]) -> None:
    """Stored in two commits (the summary starts between them, then counts the second as the core
    does), over MemoryStore and over SQLite: every answer equals the in-memory summary's."""
    first, second = ids[:split], ids[split:]
    sqlite = SqliteStore(tmp_path_factory.mktemp("idx") / "s.db")
    try:
        for store in (MemoryStore(), sqlite):
            store.append(_events(first))
            summary = PrefixSummary(4, cast(IdIndex, store))
            store.append(_events(second))
            for i in second:
                summary.add(i)
            _same_answers(summary, _memory_summary(ids), ids + absent)
    finally:
        sqlite.close()


def test_sqlite_bucket_sums_survive_restart_and_match_a_recount(tmp_path: Path) -> None:
    ids = _ids(3000)
    store = SqliteStore(tmp_path / "s.db")
    for i in range(0, len(ids), 100):
        store.append(_events(ids[i:i + 100]))
    store.close()
    reopened = SqliteStore(tmp_path / "s.db")
    reference = SortedIds()
    for i in ids:
        reference.add(i)
    assert reopened.bucket_sums() == reference.bucket_sums()
    _same_answers(PrefixSummary(4, cast(IdIndex, reopened)), _memory_summary(ids), ids[:50])
    reopened.close()


def test_a_store_from_before_the_buckets_counts_them_once_on_open(tmp_path: Path) -> None:
    ids = _ids(500)
    store = SqliteStore(tmp_path / "s.db")
    store.append(_events(ids))
    store.close()
    as_before_table(tmp_path / "s.db", "id_buckets", "id_buckets")
    reopened = SqliteStore(tmp_path / "s.db")
    assert PrefixSummary(4, cast(IdIndex, reopened)).root() == _memory_summary(ids).root()
    reopened.close()


def test_appending_stored_events_again_does_not_count_them_twice(tmp_path: Path) -> None:
    ids = _ids(200)
    store = SqliteStore(tmp_path / "s.db")
    store.append(_events(ids[:150]))
    store.append(_events(ids[100:]))          # 50 already stored, 50 new
    assert PrefixSummary(4, cast(IdIndex, store)).root() == _memory_summary(ids).root()
    store.close()


def test_a_failed_commit_leaves_the_buckets_as_they_were(tmp_path: Path) -> None:
    ids = _ids(60)
    store = SqliteStore(tmp_path / "s.db")
    store.append(_events(ids[:30]))
    before = store.bucket_sums()
    with pytest.raises(StoreWriteError):
        with store.transaction():
            store.append(_events(ids[30:]))
            raise StoreWriteError("simulated: the disk filled up")
    assert store.bucket_sums() == before
    assert not store.has_id(ids[40])
    store.close()


def test_a_store_backed_summary_needs_buckets_at_least_as_deep_as_its_inner_levels() -> None:
    with pytest.raises(UsageError, match="ae_depth"):
        PrefixSummary(5, cast(IdIndex, MemoryStore()))
    # the core's constructor falls back to holding every id for such a depth
    store = MemoryStore()
    store.append(_events(_ids(10)))
    deep = PrefixSummary.of(5, cast(IdIndex, store), lambda: iter(_ids(10)))
    assert deep.root() == _memory_summary(_ids(10), 5).root()


class _CountingIndex:
    """An IdIndex that counts its membership lookups (over a MemoryStore)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store, self.lookups = store, 0

    def has_id(self, event_id: str) -> bool:
        self.lookups += 1
        return self.store.has_id(event_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_recently_accepted_ids_are_answered_without_a_store_lookup() -> None:
    from p2pauction.gossip.antientropy import RECENT_IDS

    store = MemoryStore()
    index = _CountingIndex(store)
    summary = PrefixSummary(4, cast(IdIndex, index))
    ids = _ids(RECENT_IDS + 10)
    for i in ids:               # accepted one by one: committed, then counted by the core
        store.append(_events([i]))
        summary.add(i)
    assert all(i in summary for i in ids[10:]) and index.lookups == 0
    assert all(i in summary for i in ids[:10]) and index.lookups == 10   # the oldest: asked of the store
    assert "f" * 64 not in summary and index.lookups == 11
