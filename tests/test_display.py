"""p2pauction.display: peer text made inert, display widths, cutting with "…", tables; the log
renderer and the CLI's formatting functions that use it."""

from __future__ import annotations

import io
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pauction.display import ELLIPSIS, MAX_MARKS, Column, display_width, json_text, pad, render_table, safe_text

INJECTION = "evil\x1b[31mRED\nnewline"
# What makes a terminal act instead of print, or reorders / hides text.
DANGEROUS = {chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200B, 0x200E, 0x200F,
                              *range(0x202A, 0x202F), 0x2028, 0x2029, *range(0x2060, 0x2065),
                              *range(0x2066, 0x206A), 0xFEFF, 0xE0001, 0xE0041]}


def assert_inert(text: str) -> None:
    assert not DANGEROUS & set(text), f"unsafe character left in {text!r}"
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") or c in "\u200c\u200d" for c in text)


# --------------------------------------------------------------------------- safe_text


def test_injection_example_is_escaped_visibly() -> None:
    assert safe_text(INJECTION) == "evil\\x1b[31mRED\\nnewline"


@pytest.mark.parametrize(("raw", "shown"), [
    ("a\tb\rc", "a\\tb\\rc"),
    ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
    ("C1 \x9b2J", "C1 \\x9b2J"),                  # C1 CSI: a one-byte escape sequence on some terminals
    ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),
    ("\ufeffPic", "\\ufeffPic"),
    ("Pi\u200bc", "Pi\\u200bc"),
    ("\U000e0041\U000e0042", "\\U000e0041\\U000e0042"),   # tag characters: invisible ASCII
    ("\ud800", "\\ud800"),                           # a lone surrogate (cannot come from UTF-8)
    ("\u3164", "\\u3164"),                           # Hangul filler: a letter that draws nothing
])
def test_control_and_format_characters_are_escaped(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


@pytest.mark.parametrize("control", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067",
                                     "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"])
def test_bidi_controls_are_escaped(control: str) -> None:
    # "80 USDt" written with a right-to-left override would read "tDSU 08"
    shown = safe_text(f"bid {control}80 USDt")
    assert shown == f"bid \\u{ord(control):04x}80 USDt"
    assert_inert(shown)


def test_joiners_kept_inside_words_and_emoji_escaped_at_the_edges() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert safe_text(family) == family
    assert safe_text("\u0915\u094d\u200d\u0937") == "\u0915\u094d\u200d\u0937"   # Devanagari half form
    assert safe_text("\u200dPic") == "\\u200dPic"
    assert safe_text("Pic\u200c") == "Pic\\u200c"
    assert safe_text("a\u200d\u200db") == "a\\u200d\\u200db"
    assert safe_text("a\u200d\x1b") == "a\\u200d\\x1b"


def test_combining_marks_stay_on_their_base_up_to_a_limit() -> None:
    assert safe_text("Cafe\u0301") == "Cafe\u0301"
    zalgo = "Z" + "\u0336" * (MAX_MARKS + 2)
    assert safe_text(zalgo) == "Z" + "\u0336" * MAX_MARKS + "\\u0336\\u0336"
    assert safe_text("\u0301abc") == "\\u0301abc"            # no base: would land on the previous column


def test_plain_and_wide_text_unchanged() -> None:
    for text in ("Pic#1", "C:\\path \\x1b", "日本語の品物", "Ｐｉｃ＃１", "😀 ❤️ 👍🏽 🇫🇷", "Ωμέγα", "مرحبا"):
        assert safe_text(text) == text


@given(st.text(max_size=60))
def test_safe_text_is_inert_idempotent_and_one_line(text: str) -> None:
    shown = safe_text(text)
    assert_inert(shown)
    assert "\n" not in shown and "\r" not in shown
    assert safe_text(shown) == shown
    assert display_width(shown) == display_width(text)


# --------------------------------------------------------------------------- widths and cutting


@pytest.mark.parametrize(("text", "width"), [
    ("Pic#1", 5), ("日本語", 6), ("Ｐｉｃ", 6), ("😀", 2), ("❤️", 2), ("#\ufe0f\u20e3", 2),
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467", 2), ("👍🏽", 2), ("🇫🇷", 2), ("🇫🇷🇩🇪", 4), ("\U0001f1eb", 2), ("e\u0301", 1),
    ("\u1100\u1161\u11a8", 2), ("\u0915\u093f", 2), ("", 0), (INJECTION, len("evil\\x1b[31mRED\\nnewline")),
    ("\u202e", 6),
])
def test_display_width(text: str, width: int) -> None:
    assert display_width(text) == width


def test_cut_with_ellipsis_by_display_width() -> None:
    assert safe_text("abcdefghij", 5) == "abcd" + ELLIPSIS
    assert safe_text("abcde", 5) == "abcde"
    assert safe_text("日本語の品物", 6) == "日本" + ELLIPSIS          # 5 columns: 語 would not fit
    assert safe_text("日本語の品物", 7) == "日本語" + ELLIPSIS
    assert safe_text("😀😀😀", 4) == "😀" + ELLIPSIS
    assert safe_text("🇫🇷🇩🇪", 3) == "🇫🇷" + ELLIPSIS                     # a flag is never split
    assert safe_text("👨\u200d👩\u200d👧 family", 3) == "👨\u200d👩\u200d👧" + ELLIPSIS
    assert safe_text("ab\x1bcdef", 5) == "ab" + ELLIPSIS               # an escape is never split
    assert safe_text("e\u0301e\u0301e\u0301", 2) == "e\u0301" + ELLIPSIS
    assert safe_text("abc", 1) == ELLIPSIS
    assert safe_text("abc", 0) == ""


@given(st.text(max_size=40), st.integers(min_value=1, max_value=30))
def test_cut_never_exceeds_the_width(text: str, width: int) -> None:
    shown = safe_text(text, width)
    assert display_width(shown) <= width
    assert_inert(shown)
    if display_width(text) <= width:
        assert shown == safe_text(text)
    else:
        assert shown.endswith(ELLIPSIS)


def test_pad_by_display_width() -> None:
    assert pad("日本", 6) == "日本  "
    assert pad("7", 3, "right") == "  7"


# --------------------------------------------------------------------------- tables


def _column_starts(table: str, marker: str) -> set[int]:
    """The display column where ``marker`` starts on each line."""
    return {display_width(line[:line.index(marker)]) for line in table.splitlines()}


def test_table_aligns_wide_items_by_display_width() -> None:
    items = ["Pic#1", "日本語の品物", "😀 emoji 👨\u200d👩\u200d👧", "Ｆｕｌｌ", "Cafe\u0301", INJECTION, "\u202eabc"]
    table = render_table([Column("ITEM", max_width=20), Column("MARK"), Column("N", "right")],
                         [(item, "@", str(10 ** i)) for i, item in enumerate(items)])
    lines = table.splitlines()
    assert len(lines) == len(items) + 1                       # one line per row, whatever the cells hold
    assert _column_starts("\n".join(lines[1:]), "@") == {display_width(lines[0][:lines[0].index("MARK")])}
    assert len({display_width(line) for line in lines}) == 1  # the right-aligned column ends together
    assert_inert(table.replace("\n", ""))


def test_table_cuts_long_cells_and_keeps_headers() -> None:
    table = render_table([Column("ITEM", max_width=8), Column("SELLER")], [("a" * 50, "C1"), ("日本語の品物", "C2")])
    first, second, third = table.splitlines()
    assert first.startswith("ITEM  ") and "SELLER" in first
    assert second.startswith("aaaaaaa" + ELLIPSIS)
    assert third.startswith("日本語" + ELLIPSIS)


def test_table_rejects_a_row_of_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        render_table([Column("A"), Column("B")], [("only one",)])


# --------------------------------------------------------------------------- JSON


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8))
def test_json_text_keeps_the_exact_value_and_is_inert(value: object) -> None:
    import json

    text = json_text(value)
    assert json.loads(text) == value
    assert "\n" not in text
    assert not (DANGEROUS - {"\u200c", "\u200d"}) & set(text)
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in text)


def test_json_text_keeps_readable_text_readable() -> None:
    assert json_text({"item": "日本語 😀", "n": 1}) == '{"item": "日本語 😀", "n": 1}'
    assert json_text(INJECTION) == '"evil\\u001b[31mRED\\nnewline"'
    assert json_text("\u202e\U000e0041") == '"\\u202e\\udb40\\udc41"'


# --------------------------------------------------------------------------- the CLI's formatting


def _view(item: str, name: str) -> dict[str, object]:
    bid = {"id": "b" * 64, "bidder": "d" * 64, "name": name, "amount": "80", "lamport": 2, "ts": 1_700_000_000_000,
           "late": False}
    return {"id": "a" * 64, "seller": "c" * 64, "seller_name": name, "item": item, "currency": "USDt",
            "start_price": "75", "min_increment": "0", "ends_at": None, "opened_ts": 1_700_000_000_000,
            "status": "open", "bids": [bid], "leading": bid, "closes": [], "winner": None, "price": None,
            "closed_ts": None, "bid_count": 1, "min_next_bid": "80.00000001"}


def test_cli_renderers_show_peer_text_inert() -> None:
    from p2pauction import render

    view = _view(INJECTION, "\u202eC2\u202c")
    outputs = {
        "auctions": render.render_auctions([view]),
        "show": render.render_auction(view),
        "watch": render.render_notification({"ts": 1_700_000_000_000, "own": False, "auction_id": "a" * 64,
                                          "summary": f"{view['seller_name']} opens {INJECTION} at 75 USDt",
                                          "auction": view}),
        "history": render.render_history([{"auction_id": "a" * 64, "status": "closed", "item": INJECTION,
                                           "price": "80", "currency": "USDt", "buyer": "d" * 64,
                                           "buyer_name": INJECTION, "seller": "c" * 64, "seller_name": "\u202eC1",
                                           "closed_ts": 1}]),
        "peers": render.render_peers([{"key": "e" * 64, "name": "\u202eC2\x1b", "listen": "1.2.3.4:5\x1b[2J",
                                       "role": "node", "outbound": True, "since": 1_700_000_000_000}]),
    }
    for name, text in outputs.items():
        assert_inert(text.replace("\n", ""))
        assert "\\x1b" in text, name
    assert len(outputs["auctions"].splitlines()) == 2
    assert len(outputs["history"].splitlines()) == 2
    assert len(outputs["watch"].splitlines()) == 1
    assert "\\u202eC2\\u202c" in outputs["show"]


def test_watch_line_cuts_a_long_item_but_keeps_the_price() -> None:
    from p2pauction.render import render_notification

    item = "X" * 150 + "\x1b"
    line = render_notification({"ts": 0, "own": True, "auction_id": "a" * 64, "auction": {"item": item},
                                    "summary": f"C1 opens {item} at 75 USDt"})
    assert "at 75 USDt" in line and ELLIPSIS in line and display_width(line) < 100


def test_stats_are_tables() -> None:
    from p2pauction.render import render_stats

    stats = {"since": None, "until": None, "finished": 3, "closed": 3, "disputed": 0, "unsold": 1,
             "currencies": {"USDt": {"count": 2, "volume": "155", "average": "77.5", "max": "80"}},
             "top_sellers": [{"key": "c" * 64, "name": INJECTION, "count": 3, "sold": 2, "volume": {"USDt": "155"}}],
             "top_bidders": [{"key": "d" * 64, "name": "日本語", "bids": 4, "wins": 2, "volume": {"USDt": "155"}}],
             "top_sellers_by_volume": {"USDt": [{"key": "c" * 64, "name": "C1", "volume": "155"}]},
             "top_bidders_by_volume": {"USDt": [{"key": "d" * 64, "name": None, "volume": "155"}]}}
    text = render_stats(stats)
    assert "None" not in text and "{" not in text
    assert_inert(text.replace("\n", ""))
    headers = [line.split()[0] for line in text.split("\n\n")[1:]]
    assert headers == ["CURRENCY", "TOP", "TOP", "CURRENCY", "CURRENCY"]
    assert "155 USDt" in text and "77.5" in text


def test_console_logs_escape_peer_text() -> None:
    from p2pauction.logs import configure, get_logger

    out = io.StringIO()
    configure("debug", "console", out)
    log = get_logger("p2pauction.test")
    log.info("event_rejected", name=INJECTION, addr=("1.2.3.4", 5), field=["\u202e"])
    try:
        raise ValueError(f"bad name {INJECTION}")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert_inert(text.replace("\n", ""))
    assert "name=evil\\x1b[31mRED\\nnewline" in text
    assert "ValueError: bad name evil\\x1b[31mRED\\nnewline" in text


def test_json_logs_keep_the_exact_text() -> None:
    import json

    from p2pauction.logs import configure, get_logger

    out = io.StringIO()
    configure("debug", "json", out)
    get_logger("p2pauction.test").info("event_rejected", name=INJECTION)
    assert json.loads(out.getvalue())["name"] == INJECTION


def test_demo_lines_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    from p2pauction.demo import _say

    _say(f"[C1] {INJECTION} wins")
    assert capsys.readouterr().out == "[C1] evil\\x1b[31mRED\\nnewline wins\n"
