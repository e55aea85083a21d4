"""Deliveries that wait for Plumtree's repair, in virtual time (a deterministic copy of latency.py).

``python benchmarks/late_deliveries.py [--seeds 20] [--bids 100] [--nodes 20]`` runs, per seed, the
test harness's in-memory network (``tests/gossip_harness.py``: the real GossipCore, links of
0.2-4 ms) as ``benchmarks/latency.py`` drives real processes: one auction, then one bid every
0.3 s from the other nodes in turn, 8 s after start. For Plumtree and, as the baseline on the same
seeds, flooding (``dissemination="flood"``), and Plumtree with the two rules for many sources that
are off by default (``tree_repair``, then also ``source_parents``), it prints:

- bids whose slowest delivery took >= 0.9 s (waited for an IHAVE and a GRAFT, or anti-entropy);
- the longest run of consecutive bids that one node received late (> 0.3 s: after the next bid):
  a node cut off the tree for a while;
- duplicates as a share of the event copies pushed (flooding's share is the baseline).

Counts in virtual time: they do not depend on this machine's speed or load, so they can be
compared across commits. Issue 13's target is no waiting delivery (flooding's figure is 0).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.gossip_harness import Harness  # noqa: E402

INTERVAL = 0.3
WAITED = 0.9


VARIANTS: dict[str, dict[str, object]] = {
    "flood": {"dissemination": "flood"},
    "plumtree": {},
    "+tree_repair": {"tree_repair": True},
    "+source_parents": {"tree_repair": True, "source_parents": 64},
}


def one_seed(seed: int, nodes: int, bids: int, config: dict[str, object]) -> tuple[int, int, float]:
    """(bids that waited, longest late streak of one node, duplicate share of pushed copies)."""
    h = Harness(nodes, seed=seed, latency=(0.0002, 0.004), config=lambda i: dict(config))
    h.run(8.0)
    hosts = h.up_hosts()
    auction = h.publish_open(hosts[0])
    h.run(2.0)
    amount = Decimal(10)
    streak = {x.index: 0 for x in hosts}
    longest = 0
    placed = []
    for k in range(bids):
        bidder = hosts[1 + k % (len(hosts) - 1)]
        amount += 1
        bid = h.publish_bid(bidder, auction.id, amount)
        placed.append((bid.id, h.now, bidder))
        h.run(INTERVAL)
        for x in hosts:
            if x is not bidder:
                streak[x.index] = 0 if (x.index, bid.id) in h.accepted_at else streak[x.index] + 1
                longest = max(longest, streak[x.index])
    h.run(3.0)
    never = float("inf")
    waited = sum(1 for event_id, t0, bidder in placed
                 if any(h.accepted_at.get((x.index, event_id), never) - t0 >= WAITED for x in hosts if x is not bidder))
    copies = sum(x.core.ev.copies_received for x in hosts)
    duplicates = sum(x.core.ev.duplicates for x in hosts)
    return waited, longest, duplicates / max(copies, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--bids", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--two-way", action="store_true", help="each Plumtree variant with prune_one_way=False too")
    args = ap.parse_args()
    variants = dict(VARIANTS)
    if args.two_way:
        variants.update({f"{k} 2-way": {**v, "prune_one_way": False} for k, v in VARIANTS.items() if k != "flood"})
    for label, config in variants.items():
        results = [one_seed(seed, args.nodes, args.bids, config) for seed in range(1, args.seeds + 1)]
        waited = sum(r[0] for r in results)
        print(f"{label:22s}: {waited:3d}/{args.seeds * args.bids} bids waited >= {WAITED} s, "
              f"seeds with a wait {sum(1 for r in results if r[0]):2d}/{args.seeds}, "
              f"longest late streak {max(r[1] for r in results)}, "
              f"duplicates {statistics.mean(r[2] for r in results):.1%} of pushed copies", flush=True)


if __name__ == "__main__":
    main()
