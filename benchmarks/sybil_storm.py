"""A Sybil storm against one node, at full scale, in virtual time (issue 12's acceptance figures).

    PYTHONPATH=. python benchmarks/sybil_storm.py                  # 200 keys from 25 IPs for 60 s
    PYTHONPATH=. python benchmarks/sybil_storm.py --keys 40 --ips 10 --seconds 20

Honest nodes form a network through a discovery node; then Sybil nodes (the real core, forwarding
nothing) keep reconnecting to the target with fresh keys from a few addresses (each in its own
/16, the hardest case for network-group protection). Prints how few honest neighbours the
target had at worst and how late it received the honest auctions opened once a second. See
tests/gossip_storm.py for the set-up; tests/test_gossip_eclipse.py runs it small.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.gossip_storm import run_storm  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--honest", type=int, default=12)
    ap.add_argument("--keys", type=int, default=200, help="Sybil nodes (each reconnects with fresh keys)")
    ap.add_argument("--ips", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t = time.process_time()
    result = run_storm(honest=args.honest, sybil_keys=args.keys, sybil_ips=args.ips,
                       storm_seconds=args.seconds, seed=args.seed)
    print(f"storm: {args.keys} Sybil nodes from {args.ips} IPs for {args.seconds:.0f} virtual s, "
          f"{args.honest} honest nodes (seed {args.seed}; {time.process_time() - t:.1f} s CPU)")
    print(result.summary())
    ok = result.min_honest_neighbours >= 2 and result.missed == 0 and result.worst_delay <= 5.0
    print("PASS" if ok else "FAIL", "(target: >= 2 honest neighbours throughout, every honest auction within 5 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
