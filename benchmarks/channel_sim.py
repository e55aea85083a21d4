"""What the encrypted transport costs per delivery in a whole simulated network (issue 12).

    PYTHONPATH=. python benchmarks/channel_sim.py [--nodes 30] [--events 150] [--seed 7] [--no-shared-caches]

Runs one simulation (the real cores, virtual time) and times, inside the same run, every call
into the nodes (``data_received``, ``tick``, ... = node time) and, within it, the secure
channel's work: sealing and opening frames (``SecureSession.encrypt`` / ``decrypt``) and the
handshakes (``start``, ``receive_handshake``, static keys). For comparison it also times the
plaintext framing every frame needs anyway (``encode_body`` / ``decode_body``). Printed per
delivered event and as ratios to node time; the issue's target: encryption under 10% of node
time per delivery. The benchmarks/channel.py script has the per-frame micro figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pauction.gossip import link, secure  # noqa: E402
from simulations.runner import SimConfig, Simulation  # noqa: E402

TIMES: dict[str, float] = {}
_depth = [0]


def timed(owner: Any, name: str, bucket: str) -> None:
    """Wrap ``owner.name`` so its time (outermost call only, per bucket) adds to TIMES[bucket]."""
    fn: Callable[..., Any] = getattr(owner, name)
    TIMES.setdefault(bucket, 0.0)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[bucket] += time.perf_counter() - t
    setattr(owner, name, wrapper)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--events", type=int, default=150)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shared-caches", action=argparse.BooleanOptionalAction, default=True,
                    help="share signature checks and event decoding between the simulated nodes (the "
                         "simulator's speed-up; --no-shared-caches makes each node verify and decode "
                         "every event itself, as a real node does)")
    args = ap.parse_args()
    from simulations import engine

    timed(engine.World, "deliver_data", "node")
    timed(engine.World, "call", "node")
    timed(secure.SecureSession, "encrypt", "seal")
    timed(secure.SecureSession, "decrypt", "open")
    timed(secure.SecureSession, "start", "handshake")
    timed(secure.SecureSession, "receive_handshake", "handshake")
    timed(secure.LocalIdentity, "create", "handshake")
    # the plaintext framing, as the link calls it
    for name in ("encode_body", "decode_body"):
        TIMES.setdefault("framing", 0.0)
        fn = getattr(link, name)

        def wrapper(*a: Any, _fn: Callable[..., Any] = fn, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                TIMES["framing"] += time.perf_counter() - t
        setattr(link, name, wrapper)
    cfg = SimConfig(seed=args.seed, nodes=args.nodes, scenario="random", events=args.events, duration=30.0)
    if not args.shared_caches:
        cfg.verifier_cache = 0
        cfg.decode_cache = 0
    sim = Simulation(cfg)
    summary = sim.run()
    deliveries = max(1, sim.world.counters.accepted)   # events accepted, summed over the nodes
    node = TIMES["node"]
    crypto = TIMES["seal"] + TIMES["open"]
    print(f"simulation: {args.nodes} nodes, {args.events} events, seed {args.seed}, "
          f"ok={summary['ok']} trace={summary['trace_hash'][:16]}; {deliveries} deliveries; "
          f"{'shared caches' if args.shared_caches else 'no shared caches (each node verifies: a real node)'}")
    for bucket in ("node", "seal", "open", "handshake", "framing"):
        print(f"  {bucket:<10} {TIMES[bucket]:8.3f} s  {1e6 * TIMES[bucket] / deliveries:9.1f} us/delivery")
    print(f"encrypt+decrypt / node time = {crypto / node:.1%}  (target < 10%)")
    print(f"encrypt+decrypt+handshakes / node time = {(crypto + TIMES['handshake']) / node:.1%}")
    print(f"encrypt+decrypt / plaintext framing (the v1 cost of a frame) = {crypto / TIMES['framing']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
