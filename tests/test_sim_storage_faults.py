"""Storage faults in the simulator: store commits that fail (disk full, I/O error) at random.

The checker's "no acknowledged event lost" covers them: an event is acknowledged only once its
commit succeeded, every acknowledged event must be in the node's store when it crashes and at the
end, and in its rebuilt ledger after a restart. A planted bug that keeps in memory what the store
failed to commit (the defect of issue 11) is caught; the honest code under the same seed is clean.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from p2pauction.state.replica import Replica
from simulations.cli import main as cli_main
from simulations.faults import FaultOptions, FaultPlan, StorageSpec
from simulations.network import NetParams
from simulations.nodes import Hooks
from simulations.runner import SimConfig, Simulation


class KeepsFailedWritesReplica(Replica):
    """Planted bug: memory keeps what the store failed to commit (the ledger is never rolled back)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ledger.rollback = self.ledger.commit  # type: ignore[method-assign]


def _config(seed: int, *, hooks: Hooks | None = None, storage: float = 0.15) -> SimConfig:
    return SimConfig(seed=seed, nodes=20, events=80, duration=20.0, net=NetParams(loss=0.02),
                     faults=FaultOptions(crash_fraction=0.15, crash_window=(2.0, 16.0), crash_down=(2.0, 6.0),
                                         storage_faults=storage, storage_window=(0.0, 16.0)),
                     bound=40.0, hooks=hooks)


def _run(cfg: SimConfig) -> dict[str, Any]:
    return Simulation(cfg).run()


def test_storage_faults_lose_no_acknowledged_event_and_the_network_converges() -> None:
    s = _run(_config(2))
    assert s["ok"] and s["converged"], s["checker"]["violations"][:3]
    world = s["world"]
    assert world["storage_faults"] > 50 and world["publish_store_failed"] > 0 and world["crashes"] > 0
    assert s["core_event_counters"]["store_failures"] > 0       # received chunks dropped and re-fetched
    assert s["checker"]["acknowledged"] > 500 and s["checker"]["restart_checks"] > 0
    assert [st["rate"] for st in s["faults"]["storage"]] == [0.15]


def test_checker_catches_a_replica_that_keeps_failed_writes_in_memory() -> None:
    bug = Hooks(replica_class=lambda node: KeepsFailedWritesReplica)
    s = _run(_config(2, hooks=bug))
    assert not s["ok"]
    found = s["violations"]
    assert found.get("acknowledged_lost", 0) + found.get("liveness", 0) > 0, found
    assert "--seed 2" in s["replay"]


def test_storage_fault_plan_replays_exactly() -> None:
    plan = FaultPlan(storage=(StorageSpec(12.0, 24.0, 0.3),))
    assert FaultPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert plan.heal_time() == 24.0 and (12.0, 24.0, "storage") in plan.windows()
    cfg = dict(seed=5, nodes=8, events=30, duration=14.0, bound=40.0)
    first = _run(SimConfig(faults=plan, **cfg))  # type: ignore[arg-type]
    again = _run(SimConfig(faults=plan, **cfg))  # type: ignore[arg-type]
    assert first["ok"] and first["world"]["storage_faults"] > 0
    assert again["trace_hash"] == first["trace_hash"]
    assert again["world"]["storage_faults"] == first["world"]["storage_faults"]


def test_cli_storage_faults_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["run", "--seed", "4", "--nodes", "6", "--events", "20", "--duration", "12",
                   "--storage-faults", "0.3", "--storage-window", "0-10", "--json", "--report", str(tmp_path)])
    out = capsys.readouterr().out
    s = json.loads(next(x for x in out.splitlines() if x.startswith("{")))
    assert rc == 0 and s["ok"], s["checker"]["violations"][:3]
    assert s["faults"]["storage"][0]["rate"] == 0.3 and s["world"]["storage_faults"] > 0
    # The replay file carries the concrete storage faults, so the replay line reproduces them.
    spec = json.loads((tmp_path / "replay.json").read_text())
    assert spec["faults"]["plan"]["storage"][0]["rate"] == 0.3
    assert f"--plan {tmp_path / 'replay.json'}" in s["replay"]


def test_sweep_rows_count_the_storage_faults_and_acknowledged_events() -> None:
    from simulations.seeds import acceptance_spec
    from simulations.sweep import Tally, run_spec, summary_table

    row = run_spec(acceptance_spec(3, 8, 30, 60.0, storage=0.3))
    assert row["ok"], row["first_violation"]
    assert row["storage_faults"] > 0 and row["acknowledged"] > 0
    tally = Tally(total=1)
    tally.add(row)
    table = summary_table(tally, 1.0)
    assert re.search(rf"store commits made to fail\s+{row['storage_faults']}\n", table), table
    assert re.search(rf"acknowledgements checked \(node x event\)\s+{row['acknowledged']}\n", table), table
