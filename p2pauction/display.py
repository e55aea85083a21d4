"""Text that peers wrote, made safe to print on a terminal, measured in columns, laid out in tables.

Item names and display names are signed by whoever authored an event, so every human output treats
them as hostile: a raw ESC could recolour or rewrite the user's terminal, a newline could forge a
table row, a bidi override could make ``80`` read as ``08``. Pure functions, no I/O.

The rules (:func:`safe_text`):

- **Escaped** (shown as ``\\x1b``, ``\\n``, ``\\u202e``, ``\\U000e0041``, so the reader sees that
  something was there): C0 and C1 control characters (TAB, CR, LF, ESC, DEL, U+0080-U+009F included), every
  format character (category Cf: the bidi embeddings, overrides and isolates U+202A-U+202E,
  U+2066-U+2069, the marks U+200E/U+200F/U+061C, U+FEFF, U+200B, U+2060, soft hyphen, the tag
  characters U+E0000-U+E007F, ...), the line and paragraph separators U+2028/U+2029, lone
  surrogates, and the Hangul fillers (U+115F, U+3164, U+FFA0: letters that draw nothing).
- **Kept**: ZERO WIDTH JOINER / NON-JOINER (U+200D/U+200C) *between two visible characters*, where
  they build emoji sequences (👨‍👩‍👧) and Indic or Persian words; a joiner at either end of the text or
  next to an escaped character can only hide something, so it is escaped. Tag-sequence flags (the
  England flag) are escaped: the tag characters can also smuggle invisible ASCII.
- **Combining marks** stay on their base character, at most :data:`MAX_MARKS` of them (more is
  "Zalgo" text that smears over neighbouring rows); the extra ones, and a mark with no base (which
  would land on the previous column), are escaped.
- A backslash is left alone: ``\\x1b`` typed by a peer stays those four characters. Safe output is
  inert, not reversible. JSON output (:func:`json_text`, for ``--json``) keeps the exact text: the
  same characters are written as JSON ``\\u`` escapes, which decode to the original.
- Unassigned code points (newer than this Python's Unicode tables) are kept, one column wide.

Widths (:func:`display_width`) follow what terminals do: East Asian Wide and Fullwidth characters
(CJK, most emoji) take 2 columns, combining marks and joiners 0 (spacing marks 1); an emoji
sequence (joined by ZWJ, or with a skin-tone modifier) takes its first character's width; a flag
(two regional indicators) takes 2, and so does one alone; VARIATION SELECTOR-16 makes a
text-default symbol (❤️) 2 columns wide. Escapes take their printed length. The tables are this
Python's ``unicodedata`` (Unicode 14 on 3.11): a character made wide by a later Unicode version
(e.g. the U+2630 trigrams in 16.0) counts 1 here; a terminal that knows better may draw it wider.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

ELLIPSIS = "…"
MAX_MARKS = 4            # combining marks kept on one base character

_JOINERS = frozenset("\u200c\u200d")
_ZWJ = "\u200d"
_VS16 = "\ufe0f"
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_INVISIBLE_LETTERS = frozenset("\u115f\u3164\uffa0")     # Hangul fillers: letters that draw nothing
_MARK_CATEGORIES = frozenset(("Mn", "Me", "Mc"))


def _needs_escape(ch: str) -> bool:
    return unicodedata.category(ch) in _ESCAPED_CATEGORIES or ch in _INVISIBLE_LETTERS


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _is_mark(ch: str) -> bool:
    # Hangul medial vowels and final consonants (conjoining jamo) also join the previous syllable.
    cp = ord(ch)
    return (unicodedata.category(ch) in _MARK_CATEGORIES or 0x1160 <= cp <= 0x11FF
            or 0xD7B0 <= cp <= 0xD7FF)


def _is_skin_tone(ch: str) -> bool:
    return 0x1F3FB <= ord(ch) <= 0x1F3FF


def _is_regional(ch: str) -> bool:
    # Regional indicator letters: a pair is a flag; terminals draw one alone as wide too.
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _base_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _mark_width(ch: str) -> int:
    # A spacing mark (Mc, e.g. the Devanagari vowel sign ि) takes a column of its own.
    return _base_width(ch) if unicodedata.category(ch) == "Mc" else 0


def _widened_by_vs16(base: str) -> bool:
    # The bases of emoji variation sequences are symbols, some punctuation (‼), and the keycaps.
    return unicodedata.category(base) in ("So", "Sm", "Po") or base in "#*0123456789"


@dataclass(slots=True)
class _Cluster:
    """What the terminal draws as one thing: a base character and what attaches to it."""

    text: str
    width: int
    escaped: bool = False
    marks: int = 0


def _clusters(text: str) -> Iterator[_Cluster]:
    """``text`` split into clusters, unsafe characters already replaced by their escapes."""
    current: _Cluster | None = None
    joiner = ""                  # a ZWJ/ZWNJ waiting to see whether a visible character follows
    for ch in text:
        if joiner:
            kept = current is not None and not current.escaped and _joinable(ch)
            if current is not None and kept:
                current.text += joiner
                if joiner == _ZWJ and _is_emoji(current):
                    current.text += ch          # an emoji ZWJ sequence draws as one glyph
                    joiner = ""
                    continue
            if current is not None:
                yield current
            current = None if kept else _escaped(joiner)
            joiner = ""
        if ch in _JOINERS:
            joiner = ch
        elif current is None or not _attach(current, ch):
            if current is not None:
                yield current
            current = _start(ch)
    if current is not None:
        yield current
    if joiner:                                      # a joiner at the very end hides nothing useful
        yield _escaped(joiner)


def _escaped(ch: str) -> _Cluster:
    shown = _escape(ch)
    return _Cluster(shown, len(shown), escaped=True)


def _start(ch: str) -> _Cluster:
    # A mark or variation selector that starts a cluster has no base (or is one mark too many).
    if _needs_escape(ch) or _is_mark(ch) or ch == _VS16:
        return _escaped(ch)
    return _Cluster(ch, 2 if _is_regional(ch) else _base_width(ch))


def _attach(cluster: _Cluster, ch: str) -> bool:
    """Add ``ch`` to ``cluster`` if it draws on top of it; whether it did."""
    if cluster.escaped or _needs_escape(ch):
        return False
    if _is_regional(ch) and len(cluster.text) == 1 and _is_regional(cluster.text):
        cluster.text += ch                          # two regional indicators: one flag, 🇫🇷
        return True
    if ch == _VS16 or (_is_skin_tone(ch) and _is_emoji(cluster)):
        cluster.text += ch
        if ch == _VS16 and _widened_by_vs16(cluster.text[0]):
            cluster.width = 2                       # emoji presentation of a text symbol: ❤️
        return True
    if _is_mark(ch) and cluster.marks < MAX_MARKS:
        cluster.text += ch
        cluster.marks += 1
        cluster.width += _mark_width(ch)
        return True
    return False


def _joinable(ch: str) -> bool:
    return not (_needs_escape(ch) or ch in _JOINERS or _is_mark(ch))


def _is_emoji(cluster: _Cluster) -> bool:
    return cluster.width == 2 and unicodedata.category(cluster.text[0]) == "So"


def _is_plain(text: str) -> bool:
    # The common case, printable ASCII: nothing to escape, one column per character.
    return text.isascii() and text.isprintable()


def display_width(text: str) -> int:
    """Terminal columns ``safe_text(text)`` takes (CJK and emoji 2, combining marks 0)."""
    if _is_plain(text):
        return len(text)
    return sum(c.width for c in _clusters(text))


def safe_text(text: str, max_width: int | None = None) -> str:
    """``text`` made inert for a terminal (see the module doc); cut to ``max_width`` columns with "…".

    A cut never splits a wide character, an emoji sequence, a character from its marks, or an
    escape; the result may then be one column narrower than ``max_width``.
    """
    return _fit(text, max_width)[0]


def _fit(text: str, max_width: int | None) -> tuple[str, int]:
    """``safe_text(text, max_width)`` and its display width."""
    if _is_plain(text):
        if max_width is None or len(text) <= max_width:
            return text, len(text)
        return (text[:max_width - 1] + ELLIPSIS, max_width) if max_width >= 1 else ("", 0)
    clusters = list(_clusters(text))
    total = sum(c.width for c in clusters)
    if max_width is None or total <= max_width:
        return "".join(c.text for c in clusters), total
    if max_width < 1:
        return "", 0
    out: list[str] = []
    used = 0
    for cluster in clusters:
        if used + cluster.width > max_width - 1:    # keep a column for the ellipsis
            break
        out.append(cluster.text)
        used += cluster.width
    return "".join(out) + ELLIPSIS, used + 1


def _pad(safe: str, used: int, width: int, align: Literal["left", "right"]) -> str:
    fill = " " * max(0, width - used)
    return fill + safe if align == "right" else safe + fill


def pad(text: str, width: int, align: Literal["left", "right"] = "left") -> str:
    """Safe ``text`` padded with spaces to ``width`` columns (never cut)."""
    safe, used = _fit(text, None)
    return _pad(safe, used, width, align)


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header, alignment and the widest a cell may be (longer ones get "…")."""

    header: str
    align: Literal["left", "right"] = "left"
    max_width: int | None = None


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], gap: str = "  ") -> str:
    """Rows under a header line, every cell made safe, columns sized by display width.

    One output line per row whatever the cells hold; trailing spaces are dropped.
    """
    header = [_fit(col.header, None) for col in columns]
    body = [[_fit(cell, col.max_width) for cell, col in zip(row, columns, strict=True)] for row in rows]
    widths = [max(used for _, used in column) for column in zip(header, *body)]
    lines = []
    for row in (header, *body):
        cells = (_pad(safe, used, width, col.align) for (safe, used), width, col in zip(row, widths, columns))
        lines.append(gap.join(cells).rstrip(" "))
    return "\n".join(lines)


def json_text(value: object) -> str:
    """``value`` as one line of JSON that decodes to exactly ``value`` yet is inert on a terminal.

    Like ``json.dumps(value, sort_keys=True, ensure_ascii=False)`` (CJK and emoji stay readable),
    but what :func:`safe_text` would escape (DEL, C1 controls, bidi and other format characters,
    line separators, lone surrogates) is written as a ``\\uXXXX`` escape; json already escapes
    the C0 controls. Joiners stay: on their own they do nothing to a terminal.
    """
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if _is_plain(text):
        return text
    return "".join(_json_escape(ch) if ch not in _JOINERS and _needs_escape(ch) else ch for ch in text)


def _json_escape(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000                                   # JSON spells astral characters as a surrogate pair
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"
