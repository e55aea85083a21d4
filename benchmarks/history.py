"""History benchmark (issue 14): does a node's cost follow its open auctions, not its history?

Builds (once, cached in --cache) two stores of signed events, SMALL and LARGE, in which 99% of
the events belong to closed auctions (auctions of 50 events: an open, 48 chained bids, a close;
the last 1% of the events are auctions still open). Then, for each store, in a FRESH process
(so the figures are not polluted by the build):
  - restart-to-ready and resident memory (RSS): the Replica (ready to serve: nothing replayed,
    the working set filled on demand), then also the gossip core's anti-entropy summary (what
    GossipCore builds at start: over the store's id index, 4,096 bucket rows, not every id);
  - ingest: new events through Replica.batch() per 16 events (the gossip path), "warm" (new bids
    on the open auctions, the cache full of finished ones) and "cold" (late bids on finished
    auctions not in memory: each read back from the store, evicting another), against bare
    Ed25519 verification of the same events;
  - `history --stats` over the whole history and one page of `history`.
It prints each figure at SMALL and LARGE, the ratio and the issue's target.

Usage: python benchmarks/history.py [--small 10000] [--large 1000000] [--quick] [--cache /tmp/p2pauction-history]
(--quick: 10,000 vs 100,000.) Building costs about 100-300 us per event (signing, validation,
SQLite; signatures are not verified, the builder made them); 1,000,000 takes 5-20 minutes, once:
the stores are cached under --cache and copied for each run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402

from p2pauction.gossip.antientropy import PrefixSummary  # noqa: E402
from p2pauction.state.events import BidBody, CloseBody, Event, Kind, OpenBody, decode_event, sign_event  # noqa: E402
from p2pauction.state.identity import Identity, SignatureVerifier  # noqa: E402
from p2pauction.state.ledger import Ledger, OutcomeKind, Status  # noqa: E402
from p2pauction.state.replica import CACHE_AUCTIONS, Replica  # noqa: E402
from p2pauction.state.store import SqliteStore  # noqa: E402

NET = "bench-history"
PER_AUCTION = 50
OPEN_SHARE = 0.01
INGEST_EVENTS = 1600
AUTHORS = [Identity.generate(i.to_bytes(32, "big")) for i in range(1, 41)]


def _auction(a: int, bids: int, close: bool, day_ms: int) -> list[Event]:
    seller = AUTHORS[a % len(AUTHORS)]
    ts = day_ms * (a // 20) + a          # ~20 auctions a day: time windows mean something
    ev = sign_event(seller, net=NET, kind=Kind.OPEN,
                    body=OpenBody(f"item {a}", ("USDt", "EUR")[a % 2], Decimal(10), Decimal("0.5"), None,
                                  f"S{a % 97}"), deps=(), lamport=1, ts=ts)
    out, aid, prev, best = [ev], ev.id, ev.id, None
    for i in range(bids):
        bidder = AUTHORS[(a + 1 + i % 7) % len(AUTHORS)]
        ev = sign_event(bidder, net=NET, kind=Kind.BID, body=BidBody(aid, Decimal(10) + i, f"B{i % 7}"),
                        deps=(prev,), lamport=i + 2, ts=ts + 1 + i)
        out.append(ev)
        prev = best = ev.id
    if close:
        ev = sign_event(seller, net=NET, kind=Kind.CLOSE, body=CloseBody(aid, best), deps=(prev,),
                        lamport=bids + 2, ts=ts + bids + 1)
        out.append(ev)
    return out


class _Trusting(SignatureVerifier):
    def verify(self, public_hex: str, signature: bytes, message: bytes) -> bool:
        return True


def build_store(path: Path, n: int) -> None:
    """n events, 99% in closed auctions, ingested through a Replica (validated, derived state saved)."""
    tmp = path.with_suffix(".part")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    # the builder signed every event itself: skip verifying them (half the build time)
    replica = Replica(NET, SqliteStore(tmp), verifier=_Trusting())
    closed_events = int(n * (1 - OPEN_SHARE))
    a, done, t0 = 0, 0, time.perf_counter()
    while done < n:
        close = done + PER_AUCTION <= closed_events
        events = _auction(a, PER_AUCTION - 2 if close else PER_AUCTION - 1, close, 86_400_000)[:n - done]
        with replica.batch():
            for ev in events:
                replica.receive(ev)
        done += len(events)
        a += 1
        if a % 2000 == 0:
            print(f"  built {done:,}/{n:,} events ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    assert len(replica.ledger) == n, replica.ledger.counters
    replica.store.close()
    tmp.rename(path)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _bids_on(ledger: Ledger, auctions: list[str], count: int, start: int) -> list[bytes]:
    """New bids, chained per auction: on an open auction on top of its latest head; on a closed
    one on top of its winning bid (not the close: a late bid, accepted as such)."""
    rng = random.Random(7 + start)
    out = []
    tip: dict[str, tuple[str, int, Decimal]] = {}
    for i in range(count):
        aid = auctions[rng.randrange(len(auctions))]
        view = ledger.auction(aid)
        if aid not in tip:
            head = (view.leading.id if view.status is not Status.OPEN and view.leading
                    else max(ledger.heads(aid), key=ledger.lamport_of))
            tip[aid] = (head, ledger.lamport_of(head), view.leading.amount if view.leading else Decimal(10))
        head, lamport, amount = tip[aid]
        bidder = AUTHORS[(i + 3) % len(AUTHORS)]
        if bidder.public_hex == view.seller:   # a seller may not bid
            bidder = AUTHORS[(i + 4) % len(AUTHORS)]
        ev = sign_event(bidder, net=NET, kind=Kind.BID, body=BidBody(aid, amount + 1, None), deps=(head,),
                        lamport=lamport + 1, ts=10**12 + start + i)
        tip[aid] = (ev.id, lamport + 1, amount + 1)
        out.append(ev.raw)
    return out


def _ingest(replica: Replica, raws: list[bytes]) -> tuple[float, int]:
    """Seconds to take ``raws`` the gossip way (a batch per 16), and how many were accepted."""
    accepted = 0
    t0 = time.perf_counter()
    for i in range(0, len(raws), 16):
        with replica.batch():
            for raw in raws[i:i + 16]:
                accepted += replica.receive_raw(raw).kind is OutcomeKind.ACCEPTED
    return time.perf_counter() - t0, accepted


def _bare_verify(raws: list[bytes]) -> float:
    items = []
    for raw in raws:
        e = decode_event(raw)
        items.append((Ed25519PublicKey.from_public_bytes(bytes.fromhex(e.author)), e.sig, e.signing_bytes))
    t0 = time.perf_counter()
    for key, sig, msg in items:
        key.verify(sig, msg)
    return time.perf_counter() - t0


def child(path: Path) -> dict[str, Any]:
    """One fresh process: restart, memory, ingest (full cache, cold), stats."""
    base = rss_bytes()
    t0 = time.perf_counter()
    store = SqliteStore(path)
    replica = Replica(NET, store)
    ready = time.perf_counter() - t0
    rss = rss_bytes()
    # what the gossip core does at start: its anti-entropy summary (over the store's id index)
    summary = PrefixSummary.of(4, replica.ledger.id_index(), replica.ledger.ids_in_order)
    summary.root()
    core_ready = time.perf_counter() - t0
    core_rss = rss_bytes()
    result: dict[str, Any] = {"events": len(store), "ready_s": ready, "rss_mb": rss / 2**20,
                              "core_ready_s": core_ready, "core_rss_mb": core_rss / 2**20,
                              "rss_base_mb": base / 2**20}
    open_ids, closed_ids = store.auction_ids("open"), store.auction_ids("closed")
    # the new events are made against a scratch replica: the measured one starts cold
    maker = Replica(NET, SqliteStore(path))
    warm = _bids_on(maker.ledger, open_ids, INGEST_EVENTS, 0)
    cold = _bids_on(maker.ledger, closed_ids, INGEST_EVENTS, INGEST_EVENTS)
    maker.store.close()
    del maker
    # "warm": the open auctions in memory (the node loads them at start) and a full cache of
    # finished ones; "cold": late bids on finished auctions not in memory (read back, evicting)
    replica.ledger.auctions(Status.OPEN)
    for aid in closed_ids[-CACHE_AUCTIONS:]:
        replica.ledger.auction(aid)
    for label, raws in (("warm", warm), ("cold", cold)):
        bare = _bare_verify(raws)
        took, accepted = _ingest(replica, raws)
        result[f"{label}_accepted"] = accepted
        result[f"{label}_ratio"] = bare / took
    result["working_set"] = replica.ledger.working_set().to_json()
    t4 = time.perf_counter()
    stats = store.stats(None, None)
    t5 = time.perf_counter()
    page = store.history(None, None, limit=100, offset=len(closed_ids) // 2)
    t6 = time.perf_counter()
    result.update(stats_s=t5 - t4, finished=stats["finished"], page_s=t6 - t5, page_rows=len(page))
    store.close()
    return result


def measure(path: Path) -> dict[str, Any]:
    """Run the child on a copy (it ingests events: the cached store stays as built)."""
    with tempfile.TemporaryDirectory() as d:
        copy = Path(d) / path.name
        shutil.copyfile(path, copy)
        # the copy's gigabyte of dirty pages would still be written back during the child's
        # commits, which would then measure the kernel's writeback of the copy, not the node
        os.sync()
        out = subprocess.run([sys.executable, __file__, "--child", str(copy)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="10,000 vs 100,000 events")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/p2pauction-history"))
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    if args.quick:
        args.large = 100_000
    args.cache.mkdir(parents=True, exist_ok=True)
    figures = []
    for n in (args.small, args.large):
        path = args.cache / f"store-{n}.db"
        if not path.exists():
            t0 = time.perf_counter()
            build_store(path, n)
            print(f"built {path} ({n:,} events) in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        SqliteStore(path).close()   # a store built by older code gets today's tables once, here
        figures.append(measure(path))
    s, big = figures
    rows = [
        ("resident memory after restart (MiB)", s["rss_mb"], big["rss_mb"],
         f"{big['rss_mb'] - s['rss_mb']:+.0f} MiB", "<= +64 MiB", big["rss_mb"] <= s["rss_mb"] + 64),
        ("restart-to-ready (s)", s["ready_s"], big["ready_s"], f"x{big['ready_s'] / s['ready_s']:.1f}", "<= x2",
         big["ready_s"] <= 2 * s["ready_s"]),
        ("  + core's anti-entropy summary: memory", s["core_rss_mb"], big["core_rss_mb"],
         f"{big['core_rss_mb'] - s['core_rss_mb']:+.0f} MiB", "<= +64 MiB",
         big["core_rss_mb"] <= s["core_rss_mb"] + 64),
        ("  + core's anti-entropy summary: ready", s["core_ready_s"], big["core_ready_s"],
         f"x{big['core_ready_s'] / s['core_ready_s']:.1f}", "<= x2", big["core_ready_s"] <= 2 * s["core_ready_s"]),
        ("ingest warm / bare verify", s["warm_ratio"], big["warm_ratio"], "", ">= 0.6", big["warm_ratio"] >= 0.6),
        ("ingest cold / bare verify", s["cold_ratio"], big["cold_ratio"], "", ">= 0.6", big["cold_ratio"] >= 0.6),
        ("history --stats (s)", s["stats_s"], big["stats_s"], f"x{big['stats_s'] / s['stats_s']:.1f}", "<= x10",
         big["stats_s"] <= 10 * s["stats_s"]),
        ("history page of 100 (s)", s["page_s"], big["page_s"], f"x{big['page_s'] / max(s['page_s'], 1e-9):.1f}",
         "", True),
    ]
    print(f"events: {s['events']:,} vs {big['events']:,} (99% in closed auctions; finished auctions "
          f"{s['finished']:,} vs {big['finished']:,}; accepted warm/cold {big['warm_accepted']}/{big['cold_accepted']})")
    print(f"{'measure':<38} {'small':>10} {'large':>10} {'ratio':>10}  {'target':<11} verdict")
    print("-" * 92)
    for name, a, b, ratio, target, ok in rows:
        print(f"{name:<38} {a:>10.3f} {b:>10.3f} {ratio:>10}  {target:<11} {'PASS' if ok else 'FAIL'}")
    print(f"working set after the ingests (large): {big['working_set']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
