"""What the v2 secure channel costs (issue 12), as ratios to baselines measured in the same run.

``python benchmarks/channel.py [--rounds 15] [--seconds 0.05] [--json out.json]`` prints:

1. Per frame, for a 200-byte EVENT frame, a 1 KiB and a 64 KiB frame (two AEAD records): the
   plaintext path of version 1 (``framing.encode_frame`` then ``FrameDecoder.feed``: encode, split,
   decode the JSON) against the same frame through the secure session (``encode_body``,
   ``SecureSession.encrypt``, length header, ``FrameDecoder.split``, ``SecureSession.decrypt``,
   ``decode_body``). Ratio = encrypted / plaintext, and the added time per frame.
2. The encrypt + decrypt time of a 200-byte frame as a fraction of one Ed25519 verify: every
   delivered event costs the receiving node at least one verify, so this bounds what encryption
   adds per delivery (the issue's target: under 10% of node time per delivery).
3. A whole handshake (both sides: one X25519 key generation, three DH and one Ed25519 verify
   each) against one Ed25519 verify.

Each figure is the best of ``--rounds`` timed loops of ``--seconds`` each, the loops of the paths
compared interleaved (the machine is shared: the best loop is the least disturbed). Only ratios
are meant to be compared across machines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pauction.gossip.entropy import SeededEntropy  # noqa: E402
from p2pauction.gossip.framing import (  # noqa: E402
    HEADER_BYTES, FrameDecoder, decode_body, encode_body, encode_frame,
)
from p2pauction.gossip.secure import LocalIdentity, SecureSession  # noqa: E402
from p2pauction.state.identity import Identity, SignatureVerifier  # noqa: E402

NET = "bench"


def best_per_call(fns: dict[str, Callable[[], object]], rounds: int, seconds: float) -> dict[str, float]:
    """Seconds per call of each function: the best of ``rounds`` loops of about ``seconds``.

    The loops of the functions compared are interleaved round by round, so a burst of load on
    the shared machine hits them alike instead of one of them.
    """
    batch: dict[str, int] = {}
    for name, fn in fns.items():   # calibrate a batch that takes about 1/10 of a loop
        calls = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            if time.perf_counter() - t0 > seconds / 10:
                break
            calls *= 2
        batch[name] = calls
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            calls, n, t0 = batch[name], 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for _ in range(calls):
                    fn()
                n += calls
            best[name] = min(best[name], (time.perf_counter() - t0) / n)
    return best


def established_pair(seed: int) -> tuple[SecureSession, SecureSession]:
    a = SecureSession(LocalIdentity.create(Identity.generate(bytes([1]) * 32), SeededEntropy(seed)),
                      initiator=True, net=NET, addr="127.0.0.1:7001", randbytes=SeededEntropy(seed + 1))
    b = SecureSession(LocalIdentity.create(Identity.generate(bytes([2]) * 32), SeededEntropy(seed + 2)),
                      initiator=False, net=NET, addr="127.0.0.1:7002", randbytes=SeededEntropy(seed + 3))
    m2 = b.receive_handshake(a.start())
    assert m2 is not None
    m3 = a.receive_handshake(m2)
    assert m3 is not None
    b.receive_handshake(m3)
    return a, b


def event_message(body_size: int) -> dict[str, Any]:
    """An EVENT message whose frame body is exactly ``body_size`` bytes."""
    base = len(encode_body({"t": "event", "e": "", "h": 3}))
    return {"t": "event", "e": "x" * (body_size - base), "h": 3}


def frame_costs(body_size: int, rounds: int, seconds: float) -> dict[str, float]:
    message = event_message(body_size)
    assert len(encode_body(message)) == body_size
    plain_decoder = FrameDecoder()
    a, b = established_pair(body_size)
    secure_decoder = FrameDecoder(max_size=b.max_body)

    def plaintext_path() -> None:
        frames = plain_decoder.feed(encode_frame(message))
        assert frames[0]["h"] == 3

    def secure_path() -> None:
        body = a.encrypt(encode_body(message))
        bodies = secure_decoder.split(len(body).to_bytes(HEADER_BYTES, "big") + body)
        assert decode_body(b.decrypt(bodies[0]))["h"] == 3

    raw = encode_body(message)

    def crypto_only() -> None:
        b.decrypt(a.encrypt(raw))

    t = best_per_call({"plain": plaintext_path, "secure": secure_path, "crypto": crypto_only}, rounds, seconds)
    plain, sec, crypto = t["plain"], t["secure"], t["crypto"]
    return {"body_bytes": body_size, "plaintext_us": plain * 1e6, "secure_us": sec * 1e6,
            "ratio": sec / plain, "added_us": (sec - plain) * 1e6, "encrypt_decrypt_us": crypto * 1e6}


def handshake_costs(rounds: int, seconds: float) -> dict[str, float]:
    init_local = LocalIdentity.create(Identity.generate(bytes([1]) * 32), SeededEntropy(1))
    resp_local = LocalIdentity.create(Identity.generate(bytes([2]) * 32), SeededEntropy(2))
    entropy = SeededEntropy(3)
    signer = Identity.generate(bytes([3]) * 32)
    message = b"x" * 100
    signature = signer.sign(message)
    verifier = SignatureVerifier()   # parsed-key cache, no verdict cache: a real verify each call
    assert verifier.verify(signer.public_hex, signature, message)

    def handshake() -> None:
        a = SecureSession(init_local, initiator=True, net=NET, addr=None, randbytes=entropy)
        b = SecureSession(resp_local, initiator=False, net=NET, addr=None, randbytes=entropy)
        m2 = b.receive_handshake(a.start())
        assert m2 is not None
        m3 = a.receive_handshake(m2)
        assert m3 is not None
        b.receive_handshake(m3)

    def verify() -> None:
        verifier.verify(signer.public_hex, signature, message)

    t = best_per_call({"handshake": handshake, "verify": verify}, rounds, seconds)
    hs, v = t["handshake"], t["verify"]
    return {"handshake_both_sides_us": hs * 1e6, "ed25519_verify_us": v * 1e6, "ratio": hs / v,
            "per_side_ratio": hs / v / 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.05)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    frames = [frame_costs(size, args.rounds, args.seconds) for size in (200, 1024, 64 * 1024)]
    hs = handshake_costs(args.rounds, args.seconds)
    print("1. per frame: v1 plaintext path vs v2 encrypted path (same run)")
    print(f"   {'body':>8} {'plaintext':>11} {'encrypted':>11} {'ratio':>7} {'added':>10} {'AEAD only':>10}")
    for f in frames:
        print(f"   {f['body_bytes']:>8} {f['plaintext_us']:>9.2f}us {f['secure_us']:>9.2f}us "
              f"{f['ratio']:>7.2f} {f['added_us']:>8.2f}us {f['encrypt_decrypt_us']:>8.2f}us")
    per_delivery = frames[0]["encrypt_decrypt_us"] / hs["ed25519_verify_us"]
    print(f"2. encrypt+decrypt of a 200-byte EVENT frame = {per_delivery:.1%} of one Ed25519 verify "
          f"({hs['ed25519_verify_us']:.1f}us)")
    print(f"3. handshake, both sides: {hs['handshake_both_sides_us']:.0f}us = {hs['ratio']:.1f} Ed25519 "
          f"verifies ({hs['per_side_ratio']:.1f} per side)")
    if args.json is not None:
        args.json.write_text(json.dumps({"frames": frames, "handshake": hs,
                                         "aead_200B_over_verify": per_delivery}, indent=2))


if __name__ == "__main__":
    main()
