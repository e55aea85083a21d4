"""Anti-entropy control bytes on the wire: two real GossipCores, v2 (reconcile = "riblt") against
the prefix tree, at 10,000 events.

``python benchmarks/reconcile_wire.py [--events N] [--d 0,1,10,100]`` builds, for each ``d``, two
cores sharing N signed events, the initiator holding ``d - d//2`` more and the responder ``d//2``
more, joins them by a hand-pumped link (tests/gossip_wire.Pipe: the Noise channel, framing and
every message encoder as in a node) and runs anti-entropy rounds from the initiator until both
ledgers agree. The responder runs no rounds of its own, and dissemination is off, so every byte
counted belongs to those rounds.

Control bytes are the frames of the reconciliation messages (v2: rsync, rmore, rsym, rwant,
rfail, plus the prefix-tree messages of a fallback; prefix tree: sync, tree, ids, want, wantp),
both ways: the 4-byte length header and the plaintext body, as docs/protocol.md counts them (the
channel adds a 16-byte tag per frame: printed apart). EVENTS frames are the payload, not counted.
Printed in one run: the bytes per reconciliation, the issue's target ``2 x 32 d + 512`` (64 for
agreeing peers), the ratio to it, the prefix tree's bytes, and the ratio v2 / prefix tree.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pauction.gossip.core import GossipCore  # noqa: E402
from p2pauction.gossip.framing import HEADER_BYTES, encode_body  # noqa: E402
from p2pauction.gossip.messages import BinaryMessage, Message  # noqa: E402
from tests.gossip_wire import Pipe  # noqa: E402
from tests.test_gossip_core import core_with, make_events, run_ae_round  # noqa: E402

CONTROL = {"rsync", "rmore", "rsym", "rwant", "rfail", "sync", "tree", "ids", "want", "wantp"}
TAG_BYTES = 16   # the channel's authentication tag per frame


def frame_bytes(msg: Message) -> int:
    body = msg.to_bytes() if isinstance(msg, BinaryMessage) else encode_body(msg.to_wire())
    return HEADER_BYTES + len(body)


def reconcile(mode: str, common: list[Any], a_only: list[Any], b_only: list[Any]) -> dict[str, Any]:
    """Rounds from the initiator until both ledgers agree; the control bytes they cost."""
    a = core_with(common + a_only, 1, reconcile=mode, dissemination="none", ae_interval=1.0)
    b = core_with(common + b_only, 2, reconcile=mode, dissemination="none", anti_entropy=False)
    sent: list[tuple[str, int]] = []

    def tap(conn: int, msg: Message) -> None:
        if msg.T in CONTROL:
            sent.append((msg.T, frame_bytes(msg)))

    pipe = Pipe(a, b)
    a.sent_tap = b.sent_tap = tap
    now, rounds = 0.0, 0
    while a.replica.ledger.digest != b.replica.ledger.digest or rounds == 0:
        now = run_ae_round(a, b, pipe, now)
        rounds += 1
        if rounds > 20:
            raise SystemExit(f"{mode}: not reconciled after 20 rounds")
    by_type: dict[str, int] = {}
    for t, n in sent:
        by_type[t] = by_type.get(t, 0) + n
    return {"bytes": sum(n for _, n in sent), "frames": len(sent), "rounds": rounds, "by_type": by_type,
            "fallbacks": a.stats().get("reconcile", {}).get("fallbacks", 0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000, help="shared history (default 10,000)")
    p.add_argument("--d", default="0,1,10,100", help="differences, comma-separated")
    a = p.parse_args(argv)
    t0 = time.process_time()
    common = make_events(a.events)
    print(f"== {a.events} shared events; control bytes per reconciliation (header + plaintext body, "
          f"both ways; +{TAG_BYTES} B of channel tag per frame not included) ==")
    print(f"{'d':>4} {'v2 bytes':>9} {'frames':>6} {'rnd':>3} {'target':>7} {'v2/target':>9} "
          f"{'prefix bytes':>12} {'rnd':>3} {'v2/prefix':>9}  v2 by type")
    for d in (int(x) for x in a.d.split(",")):
        a_only = make_events(d - d // 2, who=51)
        b_only = make_events(d // 2, who=52)
        v2 = reconcile("riblt", common, a_only, b_only)
        tree = reconcile("prefix", common, a_only, b_only)
        target = 64 if d == 0 else 2 * 32 * d + 512
        print(f"{d:4d} {v2['bytes']:9d} {v2['frames']:6d} {v2['rounds']:3d} {target:7d} "
              f"{v2['bytes'] / target:9.2f} {tree['bytes']:12d} {tree['rounds']:3d} "
              f"{v2['bytes'] / tree['bytes']:9.3f}  {v2['by_type']}"
              + (f" fallbacks={v2['fallbacks']}" if v2["fallbacks"] else ""), flush=True)
    print(f"(target: 2 x 32 d + 512, and 64 B for agreeing peers; CPU {time.process_time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
