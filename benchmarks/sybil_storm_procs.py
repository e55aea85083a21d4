"""A Sybil storm against a real node process over loopback (issue 12's acceptance, real sockets).

    PYTHONPATH=. python benchmarks/sybil_storm_procs.py [--keys 200] [--ips 25] [--seconds 60]

A bootstrap, a target node and ``--honest`` honest nodes run as OS processes on 127.0.0.1 (exempt
from the per-IP caps, as a local test network). Sybils connect to the target from ``--ips``
loopback addresses 127.K.0.1 (K = 1.., each its own /16, not exempt: per-IP caps apply); each of
``--keys`` Sybil connections completes the real handshake with a fresh key, answers pings,
forwards nothing, and reconnects with a new key every 2-4 s. Every second an honest node opens an
auction. Prints the target's fewest honest neighbours (polled every 0.5 s) and how late it saw
each honest auction. Figures depend on the machine's load (timed on a shared 2-core box).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pauction.state.identity import Identity  # noqa: E402
from tests.net_helpers import BootstrapProc, NodeProc, RawPeer  # noqa: E402

NET = "storm-bench"


async def sybil(target: str, source_ip: str, end: float, stats: dict[str, int], rng: random.Random) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < end:
        peer = RawPeer(Identity.generate(), NET)
        try:
            await peer.connect(target, source_ip=source_ip)
            if await peer.handshake(timeout=5.0):
                stats["accepted"] += 1
                hold_until = loop.time() + rng.uniform(2.0, 4.0)
                while loop.time() < min(hold_until, end):
                    frame = await peer.recv(timeout=max(0.05, hold_until - loop.time()))
                    if frame is None:
                        stats["dropped_by_target"] += 1
                        break
                    if frame.get("t") == "ping":
                        peer.send({"t": "pong", "n": frame["n"]})
            else:
                stats["refused"] += 1
        except (OSError, TimeoutError, ConnectionError):
            stats["errors"] += 1
        finally:
            try:
                await peer.close()
            except (OSError, ConnectionError):
                pass
        await asyncio.sleep(rng.uniform(0.0, 0.5))   # pacing the attacker, not synchronisation


async def storm(args: argparse.Namespace, target: NodeProc, honest: list[NodeProc]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    honest_keys = {str(h.info()["public_key"]) for h in honest if h.info()}   # type: ignore[index]
    stats = {"accepted": 0, "refused": 0, "dropped_by_target": 0, "errors": 0}
    rng = random.Random(args.seed)
    end = loop.time() + args.seconds
    tasks = [asyncio.create_task(sybil(target.address, f"127.{1 + k % args.ips}.0.1", end, stats,
                                       random.Random(rng.random()))) for k in range(args.keys)]
    min_honest = 1 << 30
    published: dict[str, float] = {}
    seen: dict[str, float] = {}
    next_publish = loop.time() + 2.0
    k = 0
    while loop.time() < end:
        peers = await asyncio.to_thread(target.call, "peers")
        n = sum(1 for p in peers if p.get("key") in honest_keys)
        min_honest = min(min_honest, n)
        if loop.time() >= next_publish and loop.time() < end - 5.0:
            next_publish += 1.0
            author = honest[k % len(honest)]
            k += 1
            reply = await asyncio.to_thread(author.call, "open", item=f"honest {k}", price="5")
            published[str(reply["auction"])] = loop.time()
        views = await asyncio.to_thread(target.call, "auctions", status="all")
        for v in views:
            aid = str(v.get("id") or v.get("auction"))
            if aid in published and aid not in seen:
                seen[aid] = loop.time()
        await asyncio.sleep(0.5)   # the polling period, not synchronisation
    settle = loop.time() + 5.0
    while loop.time() < settle and len(seen) < len(published):
        for v in await asyncio.to_thread(target.call, "auctions", status="all"):
            aid = str(v.get("id") or v.get("auction"))
            if aid in published and aid not in seen:
                seen[aid] = loop.time()
        await asyncio.sleep(0.25)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delays = [seen[a] - t for a, t in published.items() if a in seen]
    return {"min_honest": min_honest, "published": len(published), "missed": len(published) - len(seen),
            "worst": max(delays, default=0.0), "mean": sum(delays) / len(delays) if delays else float("nan"),
            **stats, "target_links": target.status()["gossip"]["links"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--honest", type=int, default=5)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--ips", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="storm-") as tmp:
        wd = Path(tmp)
        boot = BootstrapProc("boot", wd, NET)
        boot.start()
        boot.wait_ready()
        fast = ["ae_interval=2", "heartbeat_interval=1"]
        target = NodeProc("target", wd, NET, [boot.address], fast)
        honest = [NodeProc(f"h{i}", wd, NET, [boot.address], fast) for i in range(args.honest)]
        procs: list[Any] = [boot, target, *honest]
        try:
            for p in (target, *honest):
                p.start()
            for p in (target, *honest):
                p.wait_ready()
            deadline = time.monotonic() + 30
            while target.status()["peers"] < min(3, args.honest) and time.monotonic() < deadline:
                time.sleep(0.2)   # formation: polled with a deadline
            t0 = time.monotonic()
            out = asyncio.run(storm(args, target, honest))
        finally:
            for p in reversed(procs):
                p.stop()
    links = out.pop("target_links")
    print(f"real processes: {args.keys} Sybil connections from {args.ips} IPs for {args.seconds:.0f} s "
          f"against a node with {args.honest} honest peers ({time.monotonic() - t0:.0f} s wall)")
    print(f"target's honest neighbours >= {out['min_honest']} throughout; honest auctions {out['published']}, "
          f"missed {out['missed']}, delay mean {out['mean']:.2f} s worst {out['worst']:.2f} s")
    print(f"sybil handshakes accepted {out['accepted']}, refused {out['refused']}, dropped by the target "
          f"{out['dropped_by_target']}, errors {out['errors']}; target: inbound_evicted "
          f"{links.get('inbound_evicted')}, inbound_rejected {links.get('inbound_rejected')}, "
          f"handshakes_ok {links.get('handshakes_ok')}")
    ok = out["min_honest"] >= 2 and out["missed"] == 0 and out["worst"] <= 5.0
    print("PASS" if ok else "FAIL", "(target: >= 2 honest neighbours throughout, every honest auction within 5 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
