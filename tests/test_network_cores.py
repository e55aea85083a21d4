"""The real GossipCore and DiscoveryCore on the asyncio transport, in one process, over loopback.

Faster than the process tests (no interpreter start-up per node), so it checks the adapter with
the real protocol in detail: formation through the bootstrap, dissemination of events published
through ``core.publish`` + ``transport.pump``, the ``on_accepted`` callback, a node that leaves
and comes back catching up by anti-entropy, and a clean shutdown of everything.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from p2pauction.bootstrap import run_bootstrap
from p2pauction.gossip.config import GossipConfig
from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.transport import Transport
from p2pauction.state.authoring import Author
from p2pauction.state.identity import Identity
from p2pauction.state.replica import Replica
from p2pauction.state.store import MemoryStore
from tests.net_helpers import until

NET = "cores-test"
FAST = {"ae_interval": 1.0, "shuffle_interval": 2.0, "housekeeping_interval": 0.2,
        "heartbeat_interval": 1.0, "exempt_ips": ("127.0.0.1",)}


@dataclass
class LiveNode:
    identity: Any
    store: MemoryStore
    bootstraps: list[str]
    seed: int
    replica: Any = None
    core: Any = None
    transport: Transport | None = None
    task: asyncio.Task[None] | None = None
    seen: list[tuple[str, bool]] = field(default_factory=list)

    async def start(self, tg: asyncio.TaskGroup) -> None:
        transport = Transport(None, "127.0.0.1:0", on_accepted=lambda ev, own: self.seen.append((ev.id, own)))
        addr = await transport.bind()
        cfg = GossipConfig(net=NET, listen_addr=addr, bootstraps=self.bootstraps, **FAST)  # type: ignore[arg-type]
        self.replica = Replica(NET, self.store)
        self.core = GossipCore(cfg, self.identity, self.replica, random.Random(self.seed), transport.now(),
                               entropy=os.urandom)
        transport.core = self.core
        self.transport = transport
        self.seed += 1000  # a restarted core draws fresh nonces
        self.task = tg.create_task(transport.run())
        await asyncio.wait_for(transport.started.wait(), 10)

    async def stop(self) -> None:
        assert self.transport is not None and self.task is not None
        self.transport.stop()
        await asyncio.wait_for(self.task, 10)

    def publish(self, event: Any) -> None:
        assert self.transport is not None
        self.core.publish(event, self.transport.now())
        self.transport.pump()

    @property
    def digest(self) -> str:
        return str(self.replica.ledger.digest_hex)


def test_real_cores_form_a_network_and_every_node_gets_every_event() -> None:
    async def main() -> None:
        stop_boot = asyncio.Event()
        ready: list[str] = []
        async with asyncio.TaskGroup() as tg:
            boot = tg.create_task(run_bootstrap(
                "127.0.0.1:0", NET, on_started=ready.append, stop=stop_boot,
                gossip={"housekeeping_interval": 0.2, "exempt_ips": ("127.0.0.1",)}))
            await until(lambda: ready, "bootstrap ready")
            nodes = [LiveNode(Identity.generate(), MemoryStore(), [ready[0]], seed=i) for i in range(6)]
            for node in nodes:
                await node.start(tg)
            await until(lambda: all(len(n.core.peers()) >= 2 for n in nodes), "every node has links")

            authors = [Author(n.identity, NET, name=f"C{i}") for i, n in enumerate(nodes)]
            wall = 1_700_000_000_000
            opened = authors[0].open(nodes[0].replica.ledger, item="Pic#1", start_price=Decimal("75"),
                                     wall_ms=wall)
            nodes[0].publish(opened)
            await until(lambda: all(n.replica.ledger.has(opened.id) for n in nodes), "the open reaches all")
            for i, amount in enumerate(("75", "75.5", "80"), start=1):
                bid = authors[i].bid(nodes[i].replica.ledger, opened.id, Decimal(amount), wall_ms=wall + i)
                nodes[i].publish(bid)
                await until(lambda b=bid: all(n.replica.ledger.has(b.id) for n in nodes), f"bid {amount}")
            close = authors[0].close(nodes[0].replica.ledger, opened.id, wall_ms=wall + 9)
            nodes[0].publish(close)
            await until(lambda: len({n.digest for n in nodes}) == 1
                        and all(len(n.replica.ledger) == 5 for n in nodes), "all agree on 5 events")
            view = nodes[5].replica.ledger.auction(opened.id)
            assert view.winner is not None and view.winner.amount == Decimal("80")
            assert (opened.id, True) in nodes[0].seen and (opened.id, False) in nodes[1].seen

            # One node leaves; events published meanwhile reach it by anti-entropy when it returns.
            gone = nodes[5]
            await gone.stop()
            more = [authors[1].open(nodes[1].replica.ledger, item=f"item{k}", start_price=Decimal(1),
                                    wall_ms=wall + 100 + k) for k in range(20)]
            for ev in more:
                nodes[1].publish(ev)
            await until(lambda: all(len(n.replica.ledger) == 25 for n in nodes[:5]), "the others have 25")
            assert len(gone.store) == 5
            await gone.start(tg)  # same identity and store: a restart
            await until(lambda: gone.digest == nodes[0].digest, "the returning node catches up", timeout=30)

            for node in nodes:
                await node.stop()
            stop_boot.set()
            await asyncio.wait_for(boot, 10)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover
    asyncio.run(main())
