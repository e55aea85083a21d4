"""Notification cost against an auction's size (issue 11, defect 9).

For an auction already holding N bids (a chain: each bid depends on the previous one), measures
per new bid, in one run and on the same machine:

  notify  what the node does per accepted event for its readers: the view
          (``ledger.auction``), the Notification, ``Feeds.publish`` to one subscription and one
          listener, and what a ``watch`` client gets (``to_json()``, ``describe()``);
  total   the same plus applying the event to the ledger (signature already checked).

Prints the median per-event cost at each size and the ratio of the largest size to the smallest
(target: within 1.5x). Usage: python benchmarks/notify.py [--sizes 10,10000] [--events 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pauction.api import Feeds, Notification  # noqa: E402
from p2pauction.state.events import BidBody, Event, Kind, OpenBody, sign_event  # noqa: E402
from p2pauction.state.identity import Identity  # noqa: E402
from p2pauction.state.ledger import Ledger  # noqa: E402

NET = "bench"


def chain(bids: int) -> tuple[Event, list[Event]]:
    """An open and ``bids`` chained bids, each one tick above the previous, from 7 bidders."""
    seller = Identity.generate((1).to_bytes(32, "big"))
    bidders = [Identity.generate((2 + i).to_bytes(32, "big")) for i in range(7)]
    opened = sign_event(seller, net=NET, kind=Kind.OPEN,
                        body=OpenBody("Hot", "USDt", Decimal(1), Decimal(0), None, "S"),
                        deps=(), lamport=1, ts=1_000)
    out: list[Event] = []
    prev, lamport = opened.id, 1
    for i in range(bids):
        lamport += 1
        ev = sign_event(bidders[i % 7], net=NET, kind=Kind.BID, body=BidBody(opened.id, Decimal(1 + i), f"B{i % 7}"),
                        deps=(prev,), lamport=lamport, ts=2_000 + i)
        out.append(ev)
        prev = ev.id
    return opened, out


def measure(opened: Event, bids: list[Event], size: int, events: int) -> tuple[float, float]:
    """Median ns per event (notify, total) for ``events`` bids arriving after ``size`` bids."""
    ledger = Ledger(NET)
    ledger.receive(opened, verified=True)
    for ev in bids[:size]:
        ledger.receive(ev, verified=True)
    feeds = Feeds()
    sub = feeds.subscribe(None, maxsize=16)
    feeds.add_listener(lambda note: None, None)
    notify: list[int] = []
    total: list[int] = []
    for ev in bids[size:size + events]:
        t0 = time.perf_counter_ns()
        outcome = ledger.receive(ev, verified=True)
        t1 = time.perf_counter_ns()
        for accepted in outcome.accepted:
            note = Notification(event=accepted, auction=ledger.auction(accepted.auction_id), own=False)
            feeds.publish(note)
            got = sub.get_nowait()
            assert got is not None
            got.to_json()
            got.describe()
        t2 = time.perf_counter_ns()
        notify.append(t2 - t1)
        total.append(t2 - t0)
    return statistics.median(notify), statistics.median(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,10000", help="comma-separated bid counts (first is the baseline)")
    parser.add_argument("--events", type=int, default=300, help="bids measured at each size")
    parser.add_argument("--repeat", type=int, default=3, help="best of N interleaved passes per size")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    opened, bids = chain(max(sizes) + args.events)
    results: dict[int, tuple[float, float]] = {}
    for _ in range(args.repeat):          # interleaved passes: drift affects every size alike
        for size in sizes:
            notify, total = measure(opened, bids, size, args.events)
            best = results.get(size)
            results[size] = (notify, total) if best is None else (min(best[0], notify), min(best[1], total))
    base = results[sizes[0]]
    print(f"{'bids':>8}  {'notify us/event':>16}  {'total us/event':>15}  {'notify ratio':>12}  {'total ratio':>11}")
    for size in sizes:
        notify, total = results[size]
        print(f"{size:>8}  {notify / 1000:>16.2f}  {total / 1000:>15.2f}  {notify / base[0]:>12.2f}  "
              f"{total / base[1]:>11.2f}")
    worst = results[sizes[-1]]
    print(f"ratio at {sizes[-1]} bids vs {sizes[0]}: notify {worst[0] / base[0]:.2f}x, "
          f"total {worst[1] / base[1]:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
