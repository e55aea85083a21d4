"""Gossip efficiency, measured through the simulator on the real GossipCore (issue 4's benchmark).

``python benchmarks/gossip.py [--quick]`` prints, in one run:

1. For N = 50 and 200 (and ``--n 1000``: issue 13's acceptance size): the payload copies each node
   receives per delivered event, with Plumtree and with plain flooding (``dissemination="flood"``)
   over the same overlay (same seed, same workload), overall and in steady state (the second half
   of the workload, once the tree formed), without and with anti-entropy payloads; and the hops to
   full coverage (for each event, the largest hop count at which a node first received it). Each
   Plumtree figure is printed beside flooding's figure of the same run and its target:
   hops mean <= flooding's mean + 2, max <= flooding's max + 4, steady copies <= 1.15
   (<= 1.25 counting anti-entropy).
2. The anti-entropy bytes per round between two peers that already agree, with 1k and 100k events
   in their history (target: the same).

Everything is a ratio or a count measured in this run; nothing depends on the machine's speed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulations.network import Endpoint, NetParams, frame_spans  # noqa: E402
from simulations.nodes import RealFactory  # noqa: E402
from simulations.runner import SimConfig, Simulation, core_totals  # noqa: E402

AE_TYPES = (b'{"t":"sync"', b'{"t":"tree"', b'{"t":"ids"', b'{"t":"want"', b'{"t":"wantp"', b'{"t":"events"')


# --- 1. copies per event and hops ---------------------------------------------------------------

def dissemination(n: int, mode: str, events: int, seed: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = SimConfig(seed=seed, nodes=n, scenario="random", events=events, duration=40.0,
                    net=NetParams(latency=(0.010, 0.050), jitter=0.005), dissemination=mode, trace=False,
                    core_overrides=dict(overrides or {}))
    sim = Simulation(cfg)
    mid: dict[str, int] = {}

    def snapshot() -> None:
        mid.update(core_totals(sim))

    sim.build()
    warmup = sim.heal - sim.workload.duration
    sim.world.sched.at(warmup + sim.workload.duration / 2, snapshot)
    t0 = time.perf_counter()
    sim.world.sched.run_until(sim.heal + cfg.bound, stop=lambda: sim.converged_at is not None)
    sim.wall = time.perf_counter() - t0
    end = core_totals(sim)

    def ratio(a: dict[str, int], b: dict[str, int], ae: bool = False) -> float:
        got = (a.get("accepted", 0) - a.get("own", 0)) - (b.get("accepted", 0) - b.get("own", 0))
        copies = a.get("copies_received", 0) - b.get("copies_received", 0)
        if ae:
            copies += a.get("ae_events_received", 0) - b.get("ae_events_received", 0)
        return copies / got if got else float("nan")

    hops = [h for h in sim.world.hops_max.values() if 0 < h < 1024]
    return {
        "n": n, "mode": mode, "converged": sim.converged_at is not None,
        "events": len(sim.checker.oracle.facts),
        "copies_per_event": round(ratio(end, {}), 3),
        "copies_per_event_steady": round(ratio(end, mid), 3),
        "copies_per_event_incl_ae": round(ratio(end, {}, ae=True), 3),
        "copies_per_event_steady_incl_ae": round(ratio(end, mid, ae=True), 3),
        # a copy served for a GRAFT waited for the graft timer (1 s): the latency tail
        "graft_served_per_1000_deliveries": round(1000 * end.get("graft_served", 0)
                                                  / max(1, end.get("accepted", 0) - end.get("own", 0)), 2),
        "frames_sent": sim.world.net.stats.frames_sent,
        "bytes": sim.world.net.stats.bytes_delivered,
        "hops_full_coverage_mean": round(statistics.fmean(hops), 2) if hops else None,
        "hops_full_coverage_max": max(hops) if hops else None,
        "log2_n": round(math.log2(n), 2),
        "wall": round(sim.wall, 1),
    }


# --- 2. anti-entropy bytes between agreeing peers ----------------------------------------------

def history(k: int, seed: int = 7) -> list[Any]:
    """``k`` valid events (auctions with bids and closes), authored in causal order on one ledger."""
    import random

    from p2pauction.state.authoring import Author
    from p2pauction.state.identity import Identity, SignatureVerifier
    from p2pauction.state.ledger import Ledger

    rng = random.Random(seed)
    net = RealFactory.net
    authors = [Author(Identity.generate(seed=rng.randbytes(32)), net) for _ in range(20)]
    ledger = Ledger(net, verifier=SignatureVerifier(cache_size=0))
    out: list[Any] = []
    ts = 1_000_000
    per_auction = 100
    while len(out) < k:
        seller = authors[len(out) % len(authors)]
        ev = seller.open(ledger, item=f"lot {len(out)}", start_price=Decimal(10), wall_ms=ts)
        ledger.receive(ev)
        out.append(ev)
        aid = ev.id
        amount = Decimal(10)
        for _ in range(min(per_auction - 2, k - len(out) - 1)):
            ts += 1
            bidder = authors[rng.randrange(len(authors))]
            if bidder is seller:
                continue
            amount += 1
            b = bidder.bid(ledger, aid, amount, wall_ms=ts)
            ledger.receive(b)
            out.append(b)
        if len(out) < k:
            c = seller.close(ledger, aid, wall_ms=ts + 1)
            ledger.receive(c)
            out.append(c)
    return out[:k]


class PrefilledFactory(RealFactory):
    """Every node starts with the same history in its store."""

    def __init__(self, events: list[Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.events = events

    def new_store(self, node: Any) -> Any:
        store = super().new_store(node)
        store.append(self.events)
        return store


def ae_bytes(k: int, events: list[Any], rounds_time: float = 300.0) -> dict[str, Any]:
    factory = PrefilledFactory(events[:k], overrides={"ae_interval": 5.0})
    cfg = SimConfig(seed=3, nodes=2, scenario="random", events=0, duration=1.0, factory=factory,
                    trace=False, bound=rounds_time)
    sim = Simulation(cfg)
    sim.build()
    w = sim.world
    settle = 20.0  # both nodes up, connected, handshaken
    counted = {"bytes": 0, "frames": 0}

    def on_frames(ep: Endpoint, data: bytes) -> None:
        if w.now < settle:
            return
        for f in frame_spans(data):
            if f[4:16].startswith(AE_TYPES):
                counted["bytes"] += len(f)
                counted["frames"] += 1

    w.net.on_frames = on_frames
    w.sched.run_until(settle)
    r0 = sum(n.core.ev.ae_rounds for n in sim.honest)
    w.sched.run_until(settle + rounds_time)
    rounds = sum(n.core.ev.ae_rounds for n in sim.honest) - r0
    digests = {n.replica.ledger.digest_hex for n in sim.honest}
    return {"history": k, "agree": len(digests) == 1, "rounds": rounds, "ae_frames": counted["frames"],
            "ae_bytes": counted["bytes"], "bytes_per_round": round(counted["bytes"] / rounds, 1) if rounds else None}


def verdicts(pt: dict[str, Any], fl: dict[str, Any]) -> list[str]:
    """Each Plumtree figure beside flooding's (same overlay, same run) and issue 13's target."""
    rows = [
        ("hops to full coverage, mean", pt["hops_full_coverage_mean"], fl["hops_full_coverage_mean"],
         "flooding + 2", (fl["hops_full_coverage_mean"] or 0) + 2),
        ("hops to full coverage, max", pt["hops_full_coverage_max"], fl["hops_full_coverage_max"],
         "flooding + 4", (fl["hops_full_coverage_max"] or 0) + 4),
        ("copies/event, steady", pt["copies_per_event_steady"], fl["copies_per_event_steady"], "1.15", 1.15),
        ("copies/event, steady, with anti-entropy", pt["copies_per_event_steady_incl_ae"],
         fl["copies_per_event_steady_incl_ae"], "1.25", 1.25),
    ]
    out = []
    for name, mine, flood, label, limit in rows:
        ok = mine is not None and mine <= limit
        out.append(f"{name:42s} plumtree {mine} | flooding {flood} | target <= {label} = {round(limit, 2)}: "
                   f"{'met' if ok else 'NOT met'}")
    out.append(f"{'deliveries by GRAFT (waited 1 s) per 1000':42s} plumtree "
               f"{pt['graft_served_per_1000_deliveries']} | flooding {fl['graft_served_per_1000_deliveries']}")
    out.append(f"{'bytes, plumtree / flooding':42s} {pt['bytes'] / fl['bytes']:.2f}x")
    return out


def _setting(text: str, parser: argparse.ArgumentParser) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        parser.error(f"--set {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller workloads and a 10k instead of 100k history")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n", type=int, action="append", help="network size (repeatable; default 50 and 200)")
    p.add_argument("--events", type=int, help="authored actions per run (default 400, 150 with --quick)")
    p.add_argument("--no-ae", action="store_true", help="skip part 2 (anti-entropy bytes)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a GossipConfig setting for every node of both runs, the value as JSON "
                        "(e.g. tree_repair=true, source_parents=8; repeatable)")
    a = p.parse_args(argv)
    overrides = dict(_setting(text, p) for text in a.set)
    events = a.events or (150 if a.quick else 400)
    results: dict[str, Any] = {"dissemination": [], "anti_entropy": []}
    print("== payload copies received per delivered event, and hops to full coverage ==")
    for n in a.n or (50, 200):
        row = {}
        for mode in ("plumtree", "flood"):
            r = dissemination(n, mode, events, a.seed, overrides)
            results["dissemination"].append(r)
            row[mode] = r
            print(f"N={n:4d} {mode:8s}: copies/event {r['copies_per_event']:.3f} "
                  f"(steady {r['copies_per_event_steady']:.3f}, with anti-entropy payloads "
                  f"{r['copies_per_event_steady_incl_ae']:.3f}), frames {r['frames_sent']}, bytes {r['bytes']}, "
                  f"hops to full coverage mean {r['hops_full_coverage_mean']} max {r['hops_full_coverage_max']} "
                  f"vs log2(N) {r['log2_n']}; converged={r['converged']}", flush=True)
        for line in verdicts(row["plumtree"], row["flood"]):
            print(f"N={n:4d} {line}", flush=True)
    if a.no_ae:
        if a.json:
            a.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    print("== anti-entropy bytes per round between two agreeing peers ==")
    big = 10_000 if a.quick else 100_000
    t0 = time.perf_counter()
    hist = history(big)
    print(f"(built a {big}-event history in {time.perf_counter() - t0:.0f}s)", flush=True)
    for k in (1_000, big):
        r = ae_bytes(k, hist)
        results["anti_entropy"].append(r)
        print(f"history {k:6d}: {r['rounds']} rounds, {r['ae_frames']} frames, {r['ae_bytes']} bytes, "
              f"{r['bytes_per_round']} bytes/round, agree={r['agree']}", flush=True)
    a1, a2 = results["anti_entropy"]
    if a1["bytes_per_round"] and a2["bytes_per_round"]:
        print(f"ratio {big} vs 1000 events: {a2['bytes_per_round'] / a1['bytes_per_round']:.2f}x (target 1.00)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
