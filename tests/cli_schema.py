"""Validation of every ``--json`` output against docs/cli-output.schema.json.

The shared helpers (tests/procs.py: ``cli``, ``query``, ``Watch``) call :func:`validate_output`
on everything they parse, so every test that reads ``--json`` checks the schema as a side effect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "cli-output.schema.json"

# control-socket operation -> the command whose output it is (query() talks to the socket directly)
OP_COMMANDS = {"open": "open", "bid": "bid", "close": "close", "auctions": "auctions", "show": "show",
               "history": "history", "stats": "history --stats", "peers": "peers", "status": "status"}


@cache
def _schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_FILE.read_text()))


@cache
def _validator(definition: str) -> Any:
    import jsonschema

    schema = _schema()
    if definition not in schema["$defs"]:
        raise AssertionError(f"{SCHEMA_FILE.name} has no $defs/{definition}")
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]},
                                           format_checker=jsonschema.FormatChecker())


def definition_for(command: str) -> str:
    """The $defs entry of a command's output (``x-commands`` of the schema)."""
    commands: dict[str, str] = _schema()["x-commands"]
    if command not in commands:
        raise AssertionError(f"{SCHEMA_FILE.name} documents no output for {command!r}")
    return commands[command]


def command_of(args: Sequence[str]) -> str | None:
    """The command an argument list runs (``history --stats`` counted apart), or None if unknown."""
    words = [a for a in args if not a.startswith("-")]
    options_with_value = {"--data-dir", "--log-level", "--log-format"}
    skip = False
    for arg in args:
        if skip:
            if arg in words:
                words.remove(arg)
            skip = False
        elif arg in options_with_value:
            skip = True
    if not words:
        return None
    command = words[0]
    if command == "history" and "--stats" in args:
        return "history --stats"
    return command


def validate_output(command: str, data: Any) -> None:
    """AssertionError naming the command, the path and the reason unless ``data`` matches."""
    errors = sorted(_validator(definition_for(command)).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(f"at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20])
        raise AssertionError(f"`{command} --json` does not match {SCHEMA_FILE.name}: {details}")
