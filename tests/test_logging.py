"""The library logs through stdlib logging and stays silent unless the application configures it;
the CLI renders logs on stderr (readable or JSON lines)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from p2pauction.logs import EVENT_ATTR, configure, get_logger

ROOT = Path(__file__).resolve().parent.parent

EMBED = textwrap.dedent("""
    import asyncio, sys
    from p2pauction.api import AuctionNode
    from p2pauction.logs import get_logger

    async def main() -> None:
        async with AuctionNode(sys.argv[1], name="C1", network=True, control=True) as node:
            await node.open_auction("Pic#1", "75")
            # What a real node logs at every level, including warnings and errors with a traceback:
            log = get_logger("p2pauction.node")
            log.debug("a_debug_line"); log.info("an_info_line"); log.warning("a_warning_line")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("an_error_line")
    asyncio.run(main())
""")


def test_embedding_the_node_writes_nothing_to_stdout_or_stderr(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", EMBED, str(tmp_path / "d")], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""


def test_an_application_that_configures_logging_gets_readable_records(tmp_path: Path) -> None:
    script = "import logging; logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n" + EMBED
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d")], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "p2pauction.node an_info_line" in p.stderr and "a_debug_line" not in p.stderr
    assert "ValueError: boom" in p.stderr and p.stdout == ""


def test_records_carry_the_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="p2pauction"):
        get_logger("p2pauction.test").info("peer_connected", key="ab" * 32, addr="127.0.0.1:9")
    record = caplog.records[-1]
    assert record.getMessage() == f"peer_connected key={'ab' * 32} addr=127.0.0.1:9"
    assert getattr(record, EVENT_ATTR)["addr"] == "127.0.0.1:9"


def test_cli_configure_renders_json_lines_on_the_given_stream(tmp_path: Path) -> None:
    out = (tmp_path / "log").open("w+")
    configure("info", "json", out)
    try:
        log = get_logger("p2pauction.test")
        log.debug("hidden")
        log.info("shown", n=1)
        out.seek(0)
        lines = [json.loads(line) for line in out.read().splitlines()]
    finally:
        configure("warning", "console", sys.stderr)
        out.close()
    assert [(x["event"], x["n"], x["level"], x["logger"]) for x in lines] == [("shown", 1, "info", "p2pauction.test")]
