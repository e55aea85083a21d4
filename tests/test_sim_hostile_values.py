"""Issue 11: hostile-but-legal values in the simulator. Hostile authors publish valid events at
the edges of the rules (times at 2^63-1, the largest amount, 32 deps, maximal items and names);
every honest node must accept them, and the checker renders every view of every node with the
CLI's and the API's own functions. A planted rendering bug (the old "year out of range" crash,
the old stats formatting) is reported as a ``view_render`` violation."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from p2pauction.state.money import MAX_AMOUNT, format_money
from simulations.faults import FaultPlan, HostileSpec
from simulations.network import NetParams
from simulations.runner import SimConfig, Simulation

pytestmark = pytest.mark.timeout(300)


def extreme_config(seed: int = 11) -> SimConfig:
    plan = FaultPlan(hostile_nodes=1, hostile=tuple(HostileSpec(0, t, "extreme_values") for t in (14.0, 18.0, 22.0)))
    return SimConfig(seed=seed, nodes=8, scenario="random", events=40, duration=15.0,
                     net=NetParams(loss=0.02, dup=0.02, reorder=0.05), faults=plan)


def run(cfg: SimConfig) -> tuple[Simulation, dict[str, Any]]:
    sim = Simulation(cfg)
    return sim, sim.run()


def test_extreme_legal_values_are_accepted_and_rendered_everywhere() -> None:
    sim, summary = run(extreme_config())
    assert summary["ok"] and summary["converged"], summary["checker"]
    assert sim.hostile.done.get("extreme_values") == 3, sim.hostile.done
    for node in sim.world.honest_live():
        extreme = [v for v in node.replica.ledger.auctions() if v.opened_ts == 2**63 - 2]
        assert len(extreme) == 3
        for view in extreme:
            assert view.bid_count == 33 and view.price == MAX_AMOUNT and view.closed_ts == 2**63 - 1
            assert len(view.item) == 200
        volume = node.replica.store.stats(None, None)["currencies"]["USDt"]["volume"]
        assert len(volume.split(".")[0]) > 18       # a total beyond the largest legal amount
    # the same seed replays the same run
    _, again = run(extreme_config())
    assert again["trace_hash"] == summary["trace_hash"]


def _old_format_ms(ms: object, pattern: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """The renderer before issue 11: datetime raises beyond year 9999."""
    if ms is None:
        return "-"
    assert isinstance(ms, int)
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime(pattern)


def test_the_checker_catches_the_old_year_out_of_range_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import p2pauction.timefmt

    monkeypatch.setattr(p2pauction.timefmt, "format_ms", _old_format_ms)
    _, summary = run(extreme_config())
    assert not summary["ok"]
    assert summary["violations"].get("view_render", 0) > 0, summary["violations"]
    details = [v["detail"] for v in summary["checker"]["violations"] if v["kind"] == "view_render"]
    assert any("out of range" in d for d in details), details
    assert "--seed 11" in summary["replay"]


def test_the_checker_catches_stats_that_cannot_show_a_large_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    import p2pauction.state.store

    monkeypatch.setattr(p2pauction.state.store, "format_total", format_money)
    _, summary = run(extreme_config())
    details = [v["detail"] for v in summary["checker"]["violations"] if v["kind"] == "view_render"]
    assert any("stats" in d and "out of range" in d for d in details), summary["violations"]
