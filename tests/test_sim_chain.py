"""Issue 11 in the simulator: a hot auction whose bids form one long chain, a fresh node joining
and a node returning in the middle of it; and a bug planted in a core handler is a violation.

The chains here are 2,000 bids with the anti-entropy budget per TREE message scaled down with
them (``ae_expand_max`` 32 instead of 256), so that the run stays short while the history still
spreads over more differing buckets than one round handles, as a 10,000-bid chain does at the
default budget (``benchmarks/chain_catchup.py`` runs that size)."""

from __future__ import annotations

from typing import Any

import pytest

from p2pauction.gossip.core import GossipCore
from p2pauction.gossip.messages import Sync
from simulations.runner import SimConfig, Simulation
from simulations.workloads import ChainAuction

SCALED = {"ae_expand_max": 32}


def _run(scenario: str, events: int, seed: int = 1) -> tuple[Simulation, dict[str, Any]]:
    sim = Simulation(SimConfig(seed=seed, nodes=4, scenario=scenario, events=events, duration=20.0,
                               bound=30.0, core_overrides=SCALED))
    return sim, sim.run()


@pytest.mark.parametrize("scenario", ["chain-burst", "chain"])
def test_fresh_and_returning_nodes_catch_up_a_long_chain(scenario: str) -> None:
    sim, s = _run(scenario, 2000)
    workload = sim.workload
    assert isinstance(workload, ChainAuction) and workload.placed == 2000
    assert s["ok"] and s["converged"], s["checker"]
    nodes = sim.world.honest_live()
    returning = sim.honest[2]
    fresh = nodes[-1]
    assert fresh not in sim.honest and returning in nodes and len(nodes) == 5
    for node in (fresh, returning):
        assert len(node.replica.ledger) == 2001, node.name          # the open and every bid
        assert node.replica.ledger.digest_hex == nodes[0].replica.ledger.digest_hex
    # they fetched the chain by its missing ancestors, not id by id
    assert fresh.core.stats()["events"]["wanta_sent"] > 0


def test_a_planted_exception_in_a_core_handler_is_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: GossipCore, link: Any, msg: Any, now: float) -> None:
        raise RuntimeError("planted bug")

    monkeypatch.setitem(GossipCore._HANDLERS, Sync, broken)
    sim = Simulation(SimConfig(seed=3, nodes=4, scenario="random", events=20, duration=15.0, bound=20.0))
    s = sim.run()
    assert not s["ok"] and s["violations"].get("core_exception", 0) >= 1, s["violations"]
    detail = next(v["detail"] for v in s["checker"]["violations"] if v["kind"] == "core_exception")
    assert "handling sync: RuntimeError: planted bug" in detail
    assert s["replay"].startswith("python -m simulations run --seed 3 ")
