"""Every command's ``--json`` output against docs/cli-output.schema.json, on real processes.

The shared helpers (tests/procs.py) validate whatever they parse; this test makes sure every
command is run at least once, with the fields that only appear in some states (a bid, a
winner, a peer with a claimed name, a finished auction) filled in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli_schema import SCHEMA_FILE, definition_for, validate_output
from tests.procs import Cluster, Proc, cli, query, wait_until

pytestmark = pytest.mark.timeout(180)


def _start_line(proc: Proc, command: str) -> dict[str, Any]:
    """The ``--json`` start line of a node or bootstrap (its log also holds JSON log records)."""
    def found() -> dict[str, Any] | None:
        for line in proc.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if "event" not in record and "level" not in record:
                    return dict(record)
        return None

    line = wait_until(found, 20, f"{proc.name}'s start line")
    validate_output(command, line)
    return line


def test_every_command_prints_json_that_matches_the_schema(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        boot = cluster.bootstrap(extra=("--json",))
        assert _start_line(boot, "bootstrap")["listen"] == boot.address
        c1 = cluster.node("C1", extra=("--json",))
        c2 = cluster.node("C2", extra=("--json",))
        assert c1.data_dir is not None and c2.data_dir is not None
        assert _start_line(c1, "node")["name"] == "C1"
        watch = cluster.watch(c2)

        opened = cli(c1.data_dir, "open", "Pic#1", "75").data
        auction = opened["auction_id"]
        wait_until(lambda: query(c2.data_dir, "status")["events"] == 1, 30, "C2 to hold the open")
        bid = cli(c2.data_dir, "bid", auction[:10], "80").data
        assert bid["is_leading"] is True and bid["amount"] == "80"
        wait_until(lambda: query(c1.data_dir, "status")["events"] == 2, 30, "C1 to hold the bid")
        closed = cli(c1.data_dir, "close", auction).data
        assert (closed["buyer_name"], closed["bid_id"], closed["price"]) == ("C2", bid["bid_id"], "80")

        for args in (("auctions", "--status", "all"), ("show", auction), ("history",), ("history", "--stats"),
                     ("status",), ("status", "--verbose"), ("peers",)):
            assert cli(c1.data_dir, *args).data is not None, args
        # C1's open event claims "C1": C2 shows that name beside C1's key
        peers = wait_until(lambda: [p for p in cli(c2.data_dir, "peers").data if p["name"] == "C1"] or None, 30,
                           "C2 to list C1 by name")
        assert peers[0]["since"] > 1_600_000_000_000       # epoch ms, not a monotonic reading
        table = cli(c2.data_dir, "peers", json_out=False).stdout.splitlines()
        assert table[0].split()[:3] == ["KEY", "NAME", "ADDRESS"]
        assert any(row.split()[:2] == [peers[0]["key"][:16], "C1"] for row in table[1:]), table
        notes = watch.wait_for(3)
        assert [n["kind"] for n in notes] == ["auction.open", "bid.place", "auction.close"]
        assert [n["missed"] for n in notes] == [0, 0, 0]
        assert notes[2]["bid_id"] == notes[1]["event_id"] == bid["bid_id"]


def test_the_schema_refuses_the_old_shapes() -> None:
    """The validation can fail: yesterday's outputs do not pass."""
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))
    with pytest.raises(AssertionError, match="auction_id"):
        validate_output("open", {"auction": "a" * 64, "view": {}})
    with pytest.raises(AssertionError, match="missed"):
        validate_output("watch", {"kind": "auction.open", "event": "a" * 64, "auction_id": "a" * 64})


def test_the_schema_documents_every_command() -> None:
    from p2pauction.cli import COMMANDS

    for command in COMMANDS:
        definition_for(command)
    definition_for("history --stats")
