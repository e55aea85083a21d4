"""A Sybil storm against one node, in virtual time on the core-level harness (issue 12).

``honest`` honest nodes (one of them the target) form a network through a discovery node. Then
``sybil_keys`` Sybil nodes, from ``sybil_ips`` addresses in as many /16 networks, keep dialing
the target: each runs the real core (so it completes the real handshake and answers pings) but
forwards nothing, and every few seconds it drops its link and comes back with a fresh key. Every
second an honest node other than the target opens an auction. The result says how few honest
neighbours the target had at worst and how late it received the honest auctions.

Used by tests/test_gossip_eclipse.py (small) and benchmarks/sybil_storm.py (full figures).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial

from p2pauction.state.identity import Identity
from p2pauction.state.store import MemoryStore
from tests.gossip_harness import Harness, Host

WARMUP = 20.0          # honest network formation before the storm
SAMPLE_EVERY = 0.25    # how often the target's neighbours are counted
SYBIL_CONFIG = {"dissemination": "none", "anti_entropy": False, "target_degree": 1, "min_degree": 1,
                "max_degree": 2, "outbound_slots": 0}


@dataclass
class StormResult:
    min_honest_neighbours: int = 1 << 30
    sybil_connections: int = 0
    published: int = 0
    missed: int = 0
    worst_delay: float = 0.0
    delays: list[float] = field(default_factory=list)
    evicted: int = 0
    refused: int = 0

    def summary(self) -> str:
        mean = sum(self.delays) / len(self.delays) if self.delays else float("nan")
        return (f"honest neighbours >= {self.min_honest_neighbours} throughout; sybil connections "
                f"{self.sybil_connections}; honest auctions {self.published}, missed {self.missed}, "
                f"delay mean {mean:.2f} s worst {self.worst_delay:.2f} s; inbound evicted {self.evicted}, "
                f"refused {self.refused}")


def run_storm(*, honest: int, sybil_keys: int, sybil_ips: int, storm_seconds: float, seed: int,
              reconnect_every: float = 3.0) -> StormResult:
    h = Harness(honest, seed=seed)
    target = h.hosts[0]
    rng = random.Random(f"storm/{seed}")
    h.run(WARMUP)
    sybils: list[Host] = []
    for k in range(sybil_keys):
        ip = f"172.{16 + k % sybil_ips}.0.1"
        host = Host(honest + k, f"{ip}:{7000 + k}", Identity.generate(rng.randbytes(32)))
        host.store = MemoryStore()
        host.extra_config = {"bootstraps": [target.addr], **SYBIL_CONFIG}
        host.up = False
        h.hosts.append(host)
        sybils.append(host)
    result = StormResult()
    honest_keys = {x.identity.public_hex for x in h.hosts[:honest]}
    base_conns = target.core.counters.conns_in

    def come_back(host: Host) -> None:
        if host.up:
            h.crash(host)
        host.identity = Identity.generate(rng.randbytes(32))   # a fresh key every time
        host.store = MemoryStore()
        h.start(host)
        h.at(rng.uniform(0.5, 1.5) * reconnect_every, partial(come_back, host))

    for host in sybils:
        h.at(rng.uniform(0.0, 2.0), partial(come_back, host))
    published: dict[str, float] = {}
    end = h.now + storm_seconds
    next_publish = h.now + 1.0
    while h.now < end:
        h.run(SAMPLE_EVERY)
        neighbours = sum(1 for key in target.core.active_keys() if key in honest_keys)
        result.min_honest_neighbours = min(result.min_honest_neighbours, neighbours)
        if h.now >= next_publish and h.now < end - 5.0:
            next_publish += 1.0
            author = h.hosts[1 + result.published % (honest - 1)]
            event = h.publish_open(author, item=f"honest {result.published}")
            published[event.id] = h.now
            result.published += 1
    for host in sybils:
        if host.up:
            h.crash(host)
    h.run(5.0)
    for event_id, when in published.items():
        got = h.accepted_at.get((target.index, event_id))
        if got is None:
            result.missed += 1
        else:
            result.delays.append(got - when)
    result.worst_delay = max(result.delays, default=0.0)
    result.sybil_connections = target.core.counters.conns_in - base_conns
    result.evicted = target.core.counters.inbound_evicted
    result.refused = sum(n for reason, n in target.core.links.close_reasons.items() if reason.startswith("no inbound slot"))
    return result
