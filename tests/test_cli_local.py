"""The CLI against one real node process (no peers): actions, queries, prefixes, bad input."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.procs import Cluster, Proc, Watch, cli, ddir, digest, query, start_node, wait_until

pytestmark = pytest.mark.timeout(180)


def assert_one_line_error(result: object, *needles: str) -> str:
    """A failed command: non-zero exit, nothing on stdout, exactly one line on stderr, no traceback."""
    from tests.procs import CliResult

    assert isinstance(result, CliResult)
    assert result.returncode != 0, f"expected a failure, got {result.stdout!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout.strip() == ""
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One offline node for the whole module (starting processes is the slow part)."""
    root = tmp_path_factory.mktemp("solo")
    with Cluster(root) as cluster:
        node = start_node(root / "S1", name="S1", offline=True)
        cluster.procs.append(node)
        yield node



def test_open_show_auctions_and_close_without_bids(solo: Proc) -> None:
    d = ddir(solo)
    opened = cli(d, "open", "Lamp", "12.5", "--increment", "0.5")
    auction = opened.data["auction_id"]
    assert len(auction) == 64
    human = cli(d, "open", "Chair", "3", json_out=False)
    assert len(human.stdout.strip()) == 64  # `open` prints just the id: scripts can capture it

    view = cli(d, "show", auction[:10]).data
    assert (view["id"], view["item"], view["status"]) == (auction, "Lamp", "open")
    assert (view["start_price"], view["min_increment"], view["currency"]) == ("12.5", "0.5", "USDt")
    listed = {v["id"] for v in cli(d, "auctions").data}
    assert auction in listed and human.stdout.strip() in listed

    closed = cli(d, "close", auction[:12]).data
    assert closed["buyer"] is None and closed["price"] is None
    assert "no bids" in cli(d, "close", human.stdout.strip(), json_out=False).stdout
    assert cli(d, "show", auction).data["status"] == "closed"
    assert auction in {v["id"] for v in cli(d, "auctions", "--status", "closed").data}
    assert auction not in {v["id"] for v in cli(d, "auctions").data}
    history = cli(d, "history").data
    assert auction in {r["auction_id"] for r in history}
    assert "Lamp" in cli(d, "show", auction, json_out=False).stdout


def test_bad_input_is_one_line_and_changes_nothing(solo: Proc) -> None:
    d = ddir(solo)
    own = cli(d, "open", "Vase", "10").data["auction_id"]
    done = cli(d, "open", "Book", "5").data["auction_id"]
    cli(d, "close", done)
    before = digest(d)

    assert_one_line_error(cli(d, "show", "ffffffffffffffff", check=False), "ffffffffffffffff")
    assert_one_line_error(cli(d, "bid", "0123456789abcdef", "5", check=False))
    assert_one_line_error(cli(d, "bid", own, "20", check=False), "own")
    assert_one_line_error(cli(d, "close", done, check=False), "closed")
    for bad in ("7,5", "abc", "-3", "1e3"):
        assert_one_line_error(cli(d, "bid", own, bad, check=False), bad)
        assert_one_line_error(cli(d, "open", "Thing", bad, check=False), bad)
    assert_one_line_error(cli(d, "open", "Thing", "5", "--increment", "1,5", check=False), "1,5")
    assert digest(d) == before


def test_ambiguous_prefix(solo: Proc) -> None:
    d = ddir(solo)
    # 17 auctions: by pigeonhole two of them share a first hex digit.
    ids = [query(d, "open", item=f"Lot {i}", price="1")["auction_id"] for i in range(17)]
    firsts: dict[str, int] = {}
    for auction_id in query(d, "auctions", status="all"):
        firsts[auction_id["id"][0]] = firsts.get(auction_id["id"][0], 0) + 1
    shared = next(c for c, n in sorted(firsts.items()) if n > 1)
    before = digest(d)
    assert_one_line_error(cli(d, "close", shared, check=False), "ambiguous")
    line = assert_one_line_error(cli(d, "show", shared, check=False), "ambiguous")
    # like git: every candidate (at most 10) with its id prefix and item
    candidates = sorted((a["id"], a["item"]) for a in query(d, "auctions", status="all")
                        if a["id"].startswith(shared))
    for auction_id, item in candidates[:10]:
        assert f"{auction_id[:12]}... {item}" in line
    if firsts[shared] > 10:
        assert f"and {firsts[shared] - 10} more" in line
    assert digest(d) == before
    assert cli(d, "show", ids[0]).data["id"] == ids[0]


def test_ambiguous_prefix_lists_at_most_ten_candidates(solo: Proc) -> None:
    d = ddir(solo)
    for i in range(40):       # 40+ auctions over 16 first digits: some digit has 3 or more
        query(d, "open", item=f"Many {i}", price="1")
    counts: dict[str, int] = {}
    for view in query(d, "auctions", status="all"):
        counts[view["id"][0]] = counts.get(view["id"][0], 0) + 1
    digit, count = max(sorted(counts.items()), key=lambda kv: kv[1])
    line = assert_one_line_error(cli(d, "show", digit, check=False), f"ambiguous prefix {digit}:")
    assert line.count("... ") == min(count, 10)
    assert (f"and {count - 10} more" in line) == (count > 10)


def test_status_is_short_and_verbose_has_every_counter(solo: Proc) -> None:
    d = ddir(solo)
    short = cli(d, "status", json_out=False).stdout
    data = cli(d, "status").data
    assert "None" not in short and len(short.splitlines()) <= 10
    for label in ("identity", "name", "address", "net", "peers", "events", "digest", "rejected"):
        assert any(line.startswith(label) for line in short.splitlines()), label
    assert data["public_key"] in short and data["digest"] in short
    verbose = cli(d, "status", "--verbose", json_out=False).stdout
    assert verbose.startswith(short.rstrip("\n"))
    for counter in data["ledger"]:
        assert f"ledger.{counter}:" in verbose, counter
    assert "node.opened:" in verbose and "None" not in verbose


def test_status_without_a_name_omits_it(tmp_path: Path) -> None:
    from tests.procs import start_node, stop

    node = start_node(tmp_path / "anon", offline=True)
    try:
        short = cli(tmp_path / "anon", "status", json_out=False).stdout
        assert "None" not in short and not any(line.startswith("name") for line in short.splitlines())
        assert cli(tmp_path / "anon", "status").data["name"] is None
    finally:
        stop(node)


def test_no_node_running(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    for args in (("status",), ("open", "X", "1"), ("bid", "ab", "3"), ("watch",), ("auctions",)):
        line = assert_one_line_error(cli(empty, *args, check=False), "no node is running")
        assert str(empty) in line
    # the default data directory comes from P2PAUCTION_DATA_DIR
    result = cli(None, "status", check=False, env={"P2PAUCTION_DATA_DIR": str(empty)})
    assert_one_line_error(result, str(empty))


def test_second_node_on_same_data_dir_fails_at_once(solo: Proc) -> None:
    from tests.procs import p2pauction_cmd

    import subprocess

    d = ddir(solo)
    before = digest(d)
    done = subprocess.run(p2pauction_cmd("node", "--data-dir", str(d), "--offline"), capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert f"in use by another node (pid {solo.pid})" in errors[0]
    assert solo.alive() and digest(d) == before


def test_files_and_modes(solo: Proc) -> None:
    d = ddir(solo)
    assert stat.S_IMODE(os.stat(d / "control.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d / "identity.key").st_mode) == 0o600
    status = cli(d, "status").data
    assert status["pid"] == solo.pid and status["name"] == "S1"
    assert len(status["digest"]) == 64 and status["events"] >= 0
    assert "S1" in cli(d, "status", json_out=False).stdout
    assert cli(d, "peers").data == []
    # --log-format json: every log line is a JSON object (the node's one stdout line is not a log)
    records = [json.loads(line) for line in solo.log.read_text().splitlines() if line.startswith("{")]
    assert "node_started" in {r.get("event") for r in records}
    assert all("level" in r and "timestamp" in r for r in records)


def test_watch_streams_own_events(solo: Proc) -> None:
    d = ddir(solo)
    watch = Watch(d)
    try:
        wait_until(lambda: query(d, "status")["subscribers"] >= 1, 20, "the watch to attach")
        auction = cli(d, "open", "Clock", "7").data["auction_id"]
        cli(d, "close", auction)
        lines = watch.wait_for(2)
        assert [(n["kind"], n["auction_id"], n["own"]) for n in lines[:2]] == [
            ("auction.open", auction, True), ("auction.close", auction, True)]
    finally:
        watch.stop()


def test_history_stats_and_time_window(solo: Proc) -> None:
    d = ddir(solo)
    auction = cli(d, "open", "Map", "2").data["auction_id"]
    cli(d, "close", auction)
    assert auction in {r["auction_id"] for r in cli(d, "history", "--since", "2000-01-01").data}
    assert cli(d, "history", "--until", "2000-01-01").data == []
    assert isinstance(cli(d, "history", "--stats").data, dict)
    other = cli(d, "open", "Globe", "3").data["auction_id"]
    cli(d, "close", other)
    everything = [r["auction_id"] for r in query(d, "history")]
    assert {auction, other} <= set(everything)
    pages = [query(d, "history", limit=2, offset=o) for o in range(0, len(everything) + 1, 2)]
    assert [r["auction_id"] for p in pages for r in p] == everything and pages[-1] == pages[-1][:1]
    page = cli(d, "history", "--limit", "1", json_out=False).stdout
    assert "--offset 1" in page  # a full page says how to get the next one
    assert_one_line_error(cli(d, "history", "--since", "yesterday-ish", check=False), "yesterday-ish")


def test_help_shows_defaults_an_example_and_the_common_options_once(capsys: pytest.CaptureFixture[str]) -> None:
    from p2pauction.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["open", "--help"])
    page = capsys.readouterr().out
    assert "(default: USDt)" in page and "example:\n  A=$(p2pauction open" in page
    assert "--data-dir DIR" not in page.split("example:")[0]  # not repeated on every page
    assert "common options" in page
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert "--data-dir DIR" in capsys.readouterr().out
    # ...but accepted on both sides of the command.
    assert parser.parse_args(["open", "x", "1", "--data-dir", "d"]).data_dir == "d"
    assert parser.parse_args(["--data-dir", "d", "open", "x", "1"]).data_dir == "d"


@pytest.mark.parametrize("currency", ["", "US$", "ABCDEFGHIJK"])
def test_open_refuses_a_bad_currency_instead_of_defaulting(currency: str, capsys: pytest.CaptureFixture[str]) -> None:
    from p2pauction.cli import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["open", "x", "1", "--currency", currency])
    assert exc.value.code == 2
    assert "must be 1-10 ASCII letters" in capsys.readouterr().err
