"""Terminal injection through the CLI, with real processes: a peer signs an item name and a display
name full of control and bidi characters; the other node's human output shows them inert, one row
per auction and one line per event, and its JSON output keeps them exactly."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from p2pauction.display import display_width
from tests.procs import (Cluster, Proc, Watch, cli, ddir, p2pauction_cmd, query, start_node, wait_converged,
                         wait_until)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

INJECTION = "evil\x1b[31mRED\nnewline"
SHOWN = "evil\\x1b[31mRED\\nnewline"
BIDI_NAME = "\u202eV2\u2066"              # a display name that would reverse what follows it
WIDE_ITEMS = ("日本語の品物", "😀 emoji 👨\u200d👩\u200d👧")
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]")



def assert_inert(stdout: str) -> list[str]:
    """No unsafe character anywhere (newlines only between lines); returns the lines."""
    assert not UNSAFE.search(stdout), f"unsafe character in {stdout!r}"
    return stdout.rstrip("\n").split("\n")


def human(data_dir: Path, *args: str) -> list[str]:
    return assert_inert(cli(data_dir, *args, json_out=False).stdout)


def watch_lines(data_dir: Path, count: int, timeout: float = 30.0) -> list[str]:
    """The first ``count`` lines of a human ``watch --from-start`` (then the watch is killed)."""
    popen = subprocess.Popen(p2pauction_cmd("watch", "--from-start", "--data-dir", str(data_dir)),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    assert popen.stdout is not None
    os.set_blocking(popen.stdout.fileno(), False)
    seen = bytearray()

    def enough() -> bool:
        assert popen.stdout is not None
        chunk = popen.stdout.read()
        if chunk:
            seen.extend(chunk)
        return seen.count(b"\n") >= count

    try:
        wait_until(enough, timeout, f"watch to print {count} lines")
    finally:
        popen.kill()
        popen.wait(10)
        popen.stdout.close()
    return assert_inert(seen.decode())[:count]


def test_peer_text_is_inert_in_every_human_output_and_exact_in_json(cluster: Cluster) -> None:
    cluster.bootstrap()
    assert cluster.boot is not None and cluster.boot.address is not None
    evil = start_node(cluster.root / "E", name=INJECTION, bootstraps=[cluster.boot.address], net=cluster.net)
    cluster.procs.append(evil)
    viewer = start_node(cluster.root / "V", name=BIDI_NAME, bootstraps=[cluster.boot.address], net=cluster.net)
    cluster.procs.append(viewer)
    e, v = ddir(evil), ddir(viewer)
    wait_until(lambda: query(v, "status")["peers"] >= 1 and query(e, "status")["peers"] >= 1, 30,
               "the two nodes to connect")

    auction = cli(e, "open", INJECTION, "1").data["auction_id"]
    for price, item in enumerate(WIDE_ITEMS, start=2):
        cli(e, "open", item, str(price))
    wait_converged([e, v], events=3)
    cli(v, "bid", auction[:12], "5")
    wait_converged([e, v], events=4)
    cli(e, "close", auction[:12])
    wait_converged([e, v], events=5)

    # the viewer's human output: every auction one row, aligned by display width
    table = human(v, "auctions", "--status", "all")
    assert len(table) == 1 + 3
    rows = {line.split()[0]: line for line in table[1:]}
    assert SHOWN in rows[auction[:12]]
    ends = {display_width(line[:line.index(" USDt") + len(" USDt")]) for line in table[1:]}
    assert len(ends) == 1, table           # the right-aligned START column ends in the same column

    show = human(v, "show", auction[:12])
    assert f"item     {SHOWN}" in show
    assert any(line.startswith(f"seller   {SHOWN} (") for line in show)
    assert "\\u202eV2\\u2066 wins at 5 USDt" in "\n".join(show)

    history = human(v, "history")
    assert len(history) == 2 and SHOWN in history[1] and "\\u202eV2\\u2066" in history[1]
    stats = "\n".join(human(v, "history", "--stats"))
    assert SHOWN[:19] + "…" in stats and "None" not in stats      # a name column is 20 wide

    feed = watch_lines(v, 5)
    assert all(re.match(r"\d\d:\d\d:\d\d \[(own |peer)\] ", line) for line in feed), feed
    assert all(SHOWN in line for line in feed)          # the seller's name, or the item, on every line
    assert "\\u202eV2\\u2066 bids 5 USDt on " + SHOWN in feed[3]

    # JSON keeps the exact text, spelled with JSON escapes so that it is inert on a terminal too
    shown = cli(v, "show", auction)
    view = shown.data
    assert (view["item"], view["seller_name"], view["winner"]["name"]) == (INJECTION, INJECTION, BIDI_NAME)
    listed = cli(v, "auctions", "--status", "all")
    assert {a["item"] for a in listed.data} == {INJECTION, *WIDE_ITEMS}
    finished = cli(v, "history")
    assert finished.data[0]["item"] == INJECTION
    for result in (shown, listed, finished):
        assert_inert(result.stdout)
    assert "日本語の品物" in listed.stdout                              # readable, not \u-escaped
    watch = Watch(v, None, "--from-start")
    try:
        notes = watch.wait_for(5)
    finally:
        watch.stop()
    assert [n["author_name"] for n in notes] == [INJECTION] * 3 + [BIDI_NAME, INJECTION]
