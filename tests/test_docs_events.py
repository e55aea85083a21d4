"""docs/events.md is a contract for other implementations: its example and escaping rules must
match what the code produces byte for byte."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from p2pauction.state.events import Kind, OpenBody, canonical, decode_event, sign_event
from p2pauction.state.identity import Identity

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def _doc_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"^(\{\"author\".*\})$", text, re.MULTILINE)
    assert match, "docs/events.md lost its example event"
    return match.group(1)


def test_the_documented_example_is_the_canonical_encoding() -> None:
    ident = Identity.generate(bytes(32))
    body = OpenBody("Pic#1", "USDt", Decimal("75"), Decimal("0"), None, "C1")
    event = sign_event(ident, net="p2pauction-main", kind=Kind.OPEN, body=body, deps=(), lamport=1,
                       ts=1764680000000)
    expected = (_doc_example().replace("<64 hex>", ident.public_hex)
                .replace("<128 hex>", event.sig.hex()))
    assert expected.encode() == event.raw
    assert decode_event(expected.encode()).id == event.id


def test_strings_escape_only_what_json_requires() -> None:
    # Short forms where JSON has them, lowercase \u00xx for other controls, everything else raw.
    assert canonical({"s": "a\"b\\c\n\t\x1b\x7f\u2028é😀"}) == (
        '{"s":"a\\"b\\\\c\\n\\t\\u001b\x7f\u2028é😀"}'.encode())
    assert canonical({"b": 1, "a": [2, 9223372036854775807]}) == b'{"a":[2,9223372036854775807],"b":1}'
