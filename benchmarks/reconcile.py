"""Set reconciliation bytes and CPU: rateless IBLTs (gossip/riblt.py) against issue 13's targets.

``python benchmarks/reconcile.py [--quick] [--trials N]`` prints, in one run, for a 100,000-id set
(10,000 with --quick) and d = 0, 1, 10, 100, 1000 differences split between both sides:

1. The control bytes of the proposed anti-entropy v2 exchange (docs/protocol.md), modelled frame
   by frame with the real encoder and decoder: RSYNC (set size + first symbol), then RMORE /
   RSYM until the responder decodes, then RWANT (8-byte id prefixes of the ids it lacks). Beside
   them: 32*d (the bytes of the missing ids) and the issue's target 2*(32 d) + 512 (and <= 64 B
   for agreeing peers); the mean symbols per difference (paper: ~1.35 for large d) and the round
   trips.
2. The same differences through today's prefix-tree anti-entropy (gossip/antientropy.py), its
   control bytes measured on the real message encoder, as the baseline.
3. CPU, as ratios to hashing every id once with SHA-256 (measured in this run): building the
   maintained symbol cache (4,096 symbols) from scratch, encoding the first m symbols from scratch
   (what a per-session salt costs), one incremental add, and a whole decode per d.

Everything printed is a byte count or a ratio measured in this run.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pauction.gossip import riblt as R  # noqa: E402

T = TypeVar("T")

FRAME_HEADER = 4            # the frame's length prefix
BINARY_TAG = 2              # 0x00 (binary body) + message type byte
RSYNC_EXTRA = 4             # initiator's set size, u32
RMORE_BODY = 2              # count u16 (the next batch starts where the last stopped)
RWANT_EXTRA = 2             # count u16
WANT_PREFIX = 8             # bytes of an id named in RWANT
RWANT_MAX = 512             # prefixes per RWANT frame
CACHE = R.DEFAULT_CAPACITY


def make_ids(n: int, tag: str) -> list[str]:
    return [hashlib.sha256(f"{tag}/{i}".encode()).hexdigest() for i in range(n)]


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


@dataclass
class Exchange:
    control_bytes: int
    symbols: int
    round_trips: int
    status: R.DecodeStatus
    decode_cpu: float
    correct: bool


def exchange(initiator: R.SymbolCache, responder: R.SymbolCache, a_only: list[str],
             b_only: list[str]) -> Exchange:
    """One round of anti-entropy v2 between the initiator (set A) and the responder (set B),
    every symbol batch through its wire bytes. Returns the control bytes both ways."""
    served = initiator.snapshot()                      # what the initiator streams this session
    total = FRAME_HEADER + BINARY_TAG + RSYNC_EXTRA + R.batch_bytes(1)
    first = served.batch(0, 1).to_bytes()
    t0 = time.process_time()
    decoder = R.Decoder(responder.snapshot(), remote_size=initiator.size)
    status = decoder.add(R.SymbolBatch.from_bytes(first))
    trips = 0
    while status is R.DecodeStatus.NEED_MORE:
        n = decoder.next_request()
        total += FRAME_HEADER + BINARY_TAG + RMORE_BODY                # RMORE
        wire = served.batch(decoder.received, n).to_bytes()            # RSYM
        total += FRAME_HEADER + BINARY_TAG + len(wire)
        status = decoder.add(R.SymbolBatch.from_bytes(wire))
        trips += 1
    cpu = time.process_time() - t0
    wanted = len(decoder.remote_only)
    if wanted or decoder.local_only or decoder.received > 1:   # RWANT frames (512 prefixes each)
        frames = max(1, -(-wanted // RWANT_MAX))
        total += frames * (FRAME_HEADER + BINARY_TAG + RWANT_EXTRA) + WANT_PREFIX * wanted
    correct = (status is R.DecodeStatus.DONE and sorted(decoder.remote_only) == sorted(a_only)
               and sorted(decoder.local_only) == sorted(b_only))
    return Exchange(total, decoder.received, trips, status, cpu, correct)


def prefix_tree_bytes(common: list[str], a_only: list[str], b_only: list[str]) -> tuple[int, int] | None:
    """Control bytes (and rounds) of today's prefix-tree anti-entropy for the same difference."""
    try:
        from p2pauction.gossip import antientropy as ae
        from p2pauction.gossip.framing import encode_frame
        from p2pauction.gossip.messages import Ids, Message, Sync, Tree, Want, WantPrefix, parse_message
    except ImportError:
        return None
    a, b = ae.PrefixSummary(), ae.PrefixSummary()
    a.add_many(common + a_only)
    b.add_many(common + b_only)
    total = 0
    for rnd in range(1, 30):
        queue: list[tuple[ae.PrefixSummary, ae.PrefixSummary, Message]] = [(a, b, Sync(r=a.root()))]
        while queue:
            src, dst, msg = queue.pop(0)
            total += len(encode_frame(msg.to_wire()))
            msg = parse_message(msg.to_wire())
            if isinstance(msg, Sync):
                plan = ae.on_sync(dst, msg.r)
            elif isinstance(msg, Tree):
                plan = ae.on_tree(dst, msg.nodes, expand_max=256, serve_max=512, ids_max=8)
            elif isinstance(msg, Ids):
                plan = ae.on_ids(dst, msg.leaves, serve_max=512)
            elif isinstance(msg, WantPrefix):
                plan = ae.on_wantp(dst, msg.prefixes, serve_max=512)
            elif isinstance(msg, Want):
                plan = ae.Plan(serve=list(msg.ids))
            else:
                return None
            queue.extend((dst, src, r) for r in plan.replies)
            for event_id in dst.in_store_order(plan.serve):
                src.add(event_id)
        if a.root() == b.root():
            return total, rnd
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a 10k-id set and fewer trials")
    p.add_argument("--trials", type=int, default=5, help="difference sets per d (default 5)")
    p.add_argument("--no-baseline", action="store_true", help="skip the prefix-tree comparison")
    a = p.parse_args(argv)
    n = 10_000 if a.quick else 100_000
    trials = 2 if a.quick else a.trials
    salt = R.network_salt("bench")
    common = make_ids(n, "common")
    raw = [bytes.fromhex(i) for i in common]

    _, hash_cpu = timed(lambda: [hashlib.sha256(x).digest() for x in raw])
    base, build_cpu = timed(lambda: _build(salt, common))
    print(f"== {n} ids; baseline: SHA-256 of every id once = {hash_cpu * 1e3:.1f} ms CPU ==")
    print(f"build the maintained cache ({CACHE} symbols) from scratch: {build_cpu:.2f} s "
          f"= {build_cpu / hash_cpu:.0f}x hashing once")
    for m in (64, 1400):
        _, cpu = timed(lambda: R.encode(common, salt, m))
        print(f"encode the first {m:4d} symbols from scratch (per-session salt): {cpu:.2f} s "
              f"= {cpu / hash_cpu:.0f}x hashing once")
    extra = make_ids(2000, "extra")
    probe = base.copy()
    _, add_cpu = timed(lambda: probe.add_many(extra))
    print(f"incremental add of one id: {add_cpu / len(extra) * 1e6:.1f} us "
          f"= {add_cpu / len(extra) / (hash_cpu / n):.0f}x hashing that id; "
          f"keeping the cache for {n} ids costs {add_cpu / len(extra) * n:.2f} s spread over their arrival")

    print("\n== anti-entropy v2 control bytes per round (mean over trials; max in brackets) ==")
    print(f"{'d':>5} {'bytes':>16} {'32*d':>7} {'target':>7} {'ok':>3} {'sym/d':>6} {'trips':>5} "
          f"{'decode CPU':>11} {'prefix-tree bytes':>18}")
    for d in (0, 1, 10, 100, 1000):
        rows = []
        for t in range(trials):
            a_only = make_ids(d - d // 2, f"a{t}")
            b_only = make_ids(d // 2, f"b{t}")
            ca, cb = base.copy(), base.copy()
            ca.add_many(a_only)
            cb.add_many(b_only)
            rows.append(exchange(ca, cb, a_only, b_only))
        assert all(r.correct for r in rows), "a decode failed or was wrong"
        mean_bytes = statistics.fmean(r.control_bytes for r in rows)
        target = 64 if d == 0 else 2 * 32 * d + 512
        sym = statistics.fmean(r.symbols for r in rows) / d if d else 0.0
        trips = statistics.fmean(r.round_trips for r in rows)
        cpu = statistics.fmean(r.decode_cpu for r in rows)
        tree = None if a.no_baseline else prefix_tree_bytes(common, make_ids(d - d // 2, "a0"),
                                                            make_ids(d // 2, "b0"))
        tree_txt = "skipped" if tree is None else f"{tree[0]} ({tree[1]} rnd)"
        print(f"{d:5d} {mean_bytes:9.0f} [{max(r.control_bytes for r in rows):5d}] {32 * d:7d} {target:7d} "
              f"{'yes' if mean_bytes <= target else 'NO':>3} {sym:6.3f} {trips:5.1f} "
              f"{cpu * 1e3:7.1f} ms ({cpu / hash_cpu:.2f}x) {tree_txt:>18}", flush=True)
    return 0


def _build(salt: bytes, ids: list[str]) -> R.SymbolCache:
    cache = R.SymbolCache(salt, CACHE)
    cache.add_many(ids)
    return cache


if __name__ == "__main__":
    sys.exit(main())
