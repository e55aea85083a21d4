"""Rateless IBLT reconciliation (p2pauction/gossip/riblt.py): pure logic, no network."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pauction.errors import ProtocolError, ReconcileError, UsageError
from p2pauction.gossip import riblt as R

SALT = R.network_salt("test-net")
CAPACITY = 1024  # enough for the differences below (<= 300 items need < 600 symbols)


def make_ids(n: int, tag: str) -> list[str]:
    return [hashlib.sha256(f"{tag}/{i}".encode()).hexdigest() for i in range(n)]


def prefix_of(ids: list[str], salt: bytes = SALT, capacity: int = CAPACITY) -> R.SymbolPrefix:
    cache = R.SymbolCache(salt, capacity)
    cache.add_many(ids)
    return cache.snapshot()


def stream(remote: R.SymbolPrefix, decoder: R.Decoder, sizes: list[int]) -> R.DecodeStatus:
    """Send ``remote``'s symbols in batches of the given sizes (the last size repeats), as bytes."""
    status = R.DecodeStatus.NEED_MORE
    k = 0
    while status is R.DecodeStatus.NEED_MORE:
        n = min(sizes[min(k, len(sizes) - 1)], decoder.max_symbols - decoder.received)
        wire = remote.batch(decoder.received, n).to_bytes()
        status = decoder.add(R.SymbolBatch.from_bytes(wire))
        k += 1
    return status


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(common=st.integers(0, 300), only_a=st.integers(0, 150), only_b=st.integers(0, 150),
       tag=st.integers(0, 10**6), sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_decoder_recovers_exactly_both_differences_in_any_batch_sizes(
        common: int, only_a: int, only_b: int, tag: int, sizes: list[int]) -> None:
    shared = make_ids(common, f"c{tag}")
    a_only = make_ids(only_a, f"a{tag}")
    b_only = make_ids(only_b, f"b{tag}")
    rng = random.Random(tag)
    a = shared + a_only
    b = shared + b_only
    rng.shuffle(a)
    rng.shuffle(b)
    decoder = R.Decoder(prefix_of(b), remote_size=len(a))
    assert stream(prefix_of(a), decoder, sizes) is R.DecodeStatus.DONE
    assert sorted(decoder.remote_only) == sorted(a_only)
    assert sorted(decoder.local_only) == sorted(b_only)
    assert decoder.received >= only_a + only_b  # one symbol per recovered item at least


def test_agreeing_sets_decode_from_the_first_symbol_and_one_difference_too() -> None:
    ids = make_ids(500, "x")
    same = R.Decoder(prefix_of(ids))
    assert same.add(prefix_of(ids).batch(0, 1)) is R.DecodeStatus.DONE
    assert same.remote_only == same.local_only == []
    one = R.Decoder(prefix_of(ids[1:]))
    assert one.add(prefix_of(ids).batch(0, 1)) is R.DecodeStatus.DONE
    assert one.remote_only == [ids[0]] and one.local_only == []


def test_symbols_needed_per_difference_near_the_papers_bound() -> None:
    # Paper: about 1.35 symbols per difference for large d; pin <= 1.6 at d = 300, one at a time.
    a_only, b_only = make_ids(150, "p"), make_ids(150, "q")
    shared = make_ids(1000, "s")
    decoder = R.Decoder(prefix_of(shared + b_only))
    assert stream(prefix_of(shared + a_only), decoder, [1]) is R.DecodeStatus.DONE
    assert 300 <= decoder.received <= 1.6 * 300


def test_maintained_cache_equals_encoding_from_scratch_in_any_order() -> None:
    ids = make_ids(400, "m")
    cache = R.SymbolCache(SALT, 300)
    for i in reversed(ids):
        cache.add(i)
    scratch = R.encode(ids, SALT, 300)
    assert cache.snapshot().batch(0, 300) == scratch.batch(0, 300)
    for i in ids:
        cache.remove(i)
    assert cache.snapshot().batch(0, 300) == R.SymbolCache(SALT, 300).snapshot().batch(0, 300)


def test_cache_walks_like_next_index() -> None:
    # The cache inlines the walk for speed; the decoder uses walk()/_next_index: they must agree.
    ids = make_ids(50, "k")
    sums, hashes, counts = [0] * 500, [0] * 500, [0] * 500
    hasher = R.ItemHasher(SALT)
    for event_id in ids:
        x = R.parse_id(event_id)
        checksum, seed = hasher(x)
        for i in R.walk(seed, 500):
            sums[i] ^= x
            hashes[i] ^= checksum
            counts[i] += 1
    expected = tuple(map(R.CodedSymbol, sums, hashes, counts))
    assert prefix_of(ids, capacity=500).batch(0, 500).symbols == expected


def test_snapshot_is_frozen_while_the_cache_grows() -> None:
    cache = R.SymbolCache(SALT, 64)
    cache.add_many(make_ids(10, "f"))
    snap = cache.snapshot()
    before = snap.batch(0, 64).to_bytes()
    cache.add(make_ids(1, "g")[0])
    assert snap.batch(0, 64).to_bytes() == before != cache.snapshot().batch(0, 64).to_bytes()


def test_determinism_and_salt_separation() -> None:
    ids = make_ids(200, "d")
    wire = prefix_of(ids).batch(0, 50).to_bytes()
    assert prefix_of(list(reversed(ids))).batch(0, 50).to_bytes() == wire
    other = prefix_of(ids, salt=R.network_salt("other-net")).batch(0, 50).to_bytes()
    assert other[:BATCH_FIRST_SYMBOL_END] == wire[:BATCH_FIRST_SYMBOL_END]  # symbol 0 holds every id
    assert other != wire
    # A session under one salt cannot be decoded against symbols of another.
    decoder = R.Decoder(prefix_of(ids[1:], salt=R.network_salt("other-net")))
    assert decoder.add(prefix_of(ids).batch(0, 1)) is R.DecodeStatus.NEED_MORE


BATCH_FIRST_SYMBOL_END = R.BATCH_HEADER_BYTES + R.ID_BYTES  # header and symbol 0's id XOR


def test_wire_layout_is_the_documented_one() -> None:
    ids = make_ids(3, "w")
    batch = prefix_of(ids).batch(2, 3)
    wire = batch.to_bytes()
    assert len(wire) == R.batch_bytes(3) == 7 + 41 * 3
    assert wire[0] == 1 and int.from_bytes(wire[1:5], "big") == 2 and int.from_bytes(wire[5:7], "big") == 3
    first = batch.symbols[0]
    assert int.from_bytes(wire[7:39], "big") == first.id_xor
    assert int.from_bytes(wire[39:47], "big") == first.hash_xor
    assert wire[47] == first.count % 256
    x = R.parse_id(ids[0])
    checksum, seed = R.ItemHasher(SALT)(x)
    # symbol 0 of a one-item set is the item itself, its checksum and count 1
    zero = prefix_of(ids[:1]).batch(0, 1).symbols[0]
    assert (zero.id_xor, zero.hash_xor, zero.count) == (x, checksum, 1)
    assert R.walk(seed, 10_000)[0] == 0


def test_walk_density_follows_the_paper() -> None:
    rng = random.Random(5)
    hits = [0] * 40
    trials = 20_000
    for _ in range(trials):
        walk = R.walk(rng.getrandbits(64), 40)
        assert walk == sorted(set(walk))
        for i in walk:
            hits[i] += 1
    for i in (0, 1, 2, 5, 10, 20, 39):
        # The gap formula approximates (i+1)(i+2) by (i+1.5)**2, as the paper's code does: at
        # i = 1 the density is 0.64 instead of 2/3; from i = 2 on, within sampling noise.
        expected = 1 / (1 + i / 2)
        assert abs(hits[i] / trials - expected) < (0.03 if i == 1 else 0.015), (i, hits[i] / trials, expected)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_our_error(data: bytes) -> None:
    try:
        batch = R.SymbolBatch.from_bytes(data)
    except ReconcileError as exc:
        assert exc.reason == "riblt_malformed"
    else:
        assert batch.to_bytes()[:7] == data[:7] and len(data) == R.batch_bytes(len(batch.symbols))


symbols_strategy = st.builds(R.CodedSymbol, st.integers(0, 2**256 - 1), st.integers(0, 2**64 - 1),
                             st.integers(0, 255))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(symbols_strategy, min_size=1, max_size=20), min_size=1, max_size=12),
       local=st.integers(0, 50), max_symbols=st.integers(1, 100),
       remote_size=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_garbage_symbols_end_in_a_status_or_our_error_within_the_limit(
        batches: list[list[R.CodedSymbol]], local: int, max_symbols: int, remote_size: int | None) -> None:
    decoder = R.Decoder(prefix_of(make_ids(local, "l"), capacity=100), max_symbols=max_symbols,
                        remote_size=remote_size)
    for symbols in batches:
        try:
            status = decoder.add(R.SymbolBatch(decoder.received, tuple(symbols)))
        except ProtocolError:
            return
        assert decoder.received <= max_symbols
        assert len(decoder.remote_only) + len(decoder.local_only) <= decoder.received
        assert 0 <= decoder.next_request() <= max_symbols - decoder.received
        if status is R.DecodeStatus.FAILED:  # at the limit, or given up (only with a size hint)
            assert decoder.received == max_symbols or (remote_size is not None and decoder.received >= 64)
            assert decoder.next_request() == 0


def test_counts_that_never_resolve_stop_at_the_limit() -> None:
    rng = random.Random(1)
    decoder = R.Decoder(prefix_of([], capacity=256), max_symbols=200, remote_size=10**6)
    status = R.DecodeStatus.NEED_MORE
    while status is R.DecodeStatus.NEED_MORE:
        n = decoder.next_request() or 1
        batch = R.SymbolBatch(decoder.received, tuple(
            R.CodedSymbol(rng.getrandbits(256), rng.getrandbits(64), 2) for _ in range(n)))
        status = decoder.add(batch)
    assert status is R.DecodeStatus.FAILED and decoder.received == 200
    assert decoder.next_request() == 0 and decoder.remote_only == []
    with pytest.raises(ReconcileError) as exc:
        decoder.add(R.SymbolBatch(200, (R.CodedSymbol(0, 0, 0),)))
    assert exc.value.reason == "riblt_limit"


def test_a_stream_that_will_not_peel_gives_up_early_when_the_size_is_known() -> None:
    # Same size on both sides and counts that say "no difference", yet symbols never empty:
    # what two mined ids with the same walk look like. FAILED long before max_symbols.
    rng = random.Random(2)
    ids = make_ids(100, "n")
    decoder = R.Decoder(prefix_of(ids), remote_size=len(ids))
    own = prefix_of(ids)
    status = R.DecodeStatus.NEED_MORE
    while status is R.DecodeStatus.NEED_MORE:
        n = decoder.next_request() or 1
        batch = own.batch(decoder.received, n)
        status = decoder.add(R.SymbolBatch(batch.start, tuple(
            R.CodedSymbol(s.id_xor ^ rng.getrandbits(256), s.hash_xor ^ rng.getrandbits(64), s.count)
            for s in batch.symbols)))
    assert status is R.DecodeStatus.FAILED
    assert decoder.received < 100 < decoder.max_symbols


def test_batches_out_of_sequence_are_refused() -> None:
    decoder = R.Decoder(prefix_of(make_ids(5, "o")))
    remote = prefix_of(make_ids(6, "o"))
    with pytest.raises(ReconcileError) as exc:
        decoder.add(remote.batch(1, 2))
    assert exc.value.reason == "riblt_sequence"


def test_an_item_recovered_twice_is_an_inconsistent_stream() -> None:
    # A hostile sender repeats a pure symbol off the item's walk: no honest set does that (else the
    # symbol would stay pure for ever and the decoder never finish).
    x = R.parse_id(make_ids(1, "h")[0])
    checksum, seed = R.ItemHasher(SALT)(x)
    off_walk = next(i for i in range(1, 100) if i not in R.walk(seed, 100))
    symbols = [R.CodedSymbol(0, 0, 0)] * (off_walk + 1)
    symbols[0] = symbols[off_walk] = R.CodedSymbol(x, checksum, 1)
    decoder = R.Decoder(prefix_of([], capacity=128))
    with pytest.raises(ReconcileError) as exc:
        decoder.add(R.SymbolBatch(0, tuple(symbols)))
    assert exc.value.reason == "riblt_inconsistent"


def test_next_request_reaches_a_large_one_sided_difference_in_few_round_trips() -> None:
    shared = make_ids(2000, "r")
    missing = make_ids(400, "s")
    decoder = R.Decoder(prefix_of(shared, capacity=2048), remote_size=2400)
    remote = prefix_of(shared + missing, capacity=2048)
    trips = 0
    n = 1
    while decoder.add(remote.batch(decoder.received, n)) is R.DecodeStatus.NEED_MORE:
        n = decoder.next_request()
        assert n >= 1
        trips += 1
    assert sorted(decoder.remote_only) == sorted(missing)
    assert trips <= 15                        # the size hint jumps straight to >= 400 symbols
    assert decoder.received <= 1.05 * 1.7 * 400   # at most 5% past what decoding needed


def test_local_misuse_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        R.SymbolCache(b"", 10)
    with pytest.raises(UsageError):
        R.SymbolCache(SALT, 10).add("not-an-id")
    with pytest.raises(UsageError):
        R.Decoder(prefix_of([], capacity=10), max_symbols=11)
    with pytest.raises(UsageError):
        R.SymbolBatch(0, ())
