"""Money as `decimal.Decimal`, with exactly one canonical string form per amount.

The spec's grammar allows at most 18 integer digits and 8 fraction digits, no sign, no exponent,
no leading zeros and no trailing fraction zeros, so that every amount has one encoding (events
must be canonical byte for byte).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from p2pauction.errors import MoneyError

MONEY_RE: re.Pattern[str] = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{0,7}[1-9])?", re.ASCII)
CURRENCY_RE: re.Pattern[str] = re.compile(r"[A-Za-z]{1,10}", re.ASCII)
MAX_FRACTION_DIGITS = 8


def is_money(text: object) -> bool:
    """True when ``text`` is a string in the canonical money form."""
    return isinstance(text, str) and MONEY_RE.fullmatch(text) is not None


def parse_money(text: str) -> Decimal:
    """The Decimal for a canonical money string; MoneyError (saying why) for anything else."""
    if not isinstance(text, str):
        raise MoneyError(f"money must be a string like '75' or '75.5', not {type(text).__name__}")
    if MONEY_RE.fullmatch(text) is None:
        raise MoneyError(
            f"malformed amount {text!r}: use digits with an optional '.' and up to "
            f"{MAX_FRACTION_DIGITS} decimals, no sign, exponent, leading or trailing zeros "
            "(e.g. 75 or 75.5)")
    return Decimal(text)


def parse_money_lenient(text: str) -> Decimal:
    """User input: accepts '75.50' or '075' (normalised), refuses signs, exponents, NaN, commas."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text.strip(), re.ASCII):
        raise MoneyError(f"malformed amount {text!r}: use digits with an optional '.' (e.g. 75.5)")
    try:
        return parse_money(format_money(Decimal(text.strip())))
    except InvalidOperation:  # pragma: no cover - the regex already excludes these
        raise MoneyError(f"malformed amount {text!r}") from None


def format_money(value: Decimal) -> str:
    """Canonical string for an amount (inverse of parse_money); MoneyError if not representable."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise MoneyError(f"not a finite decimal amount: {value!r}")
    if value.is_zero():
        return "0"
    if value < 0:
        raise MoneyError(f"amounts cannot be negative: {value}")
    text = format(value.normalize(), "f")
    if MONEY_RE.fullmatch(text) is None:
        raise MoneyError(
            f"amount {text} is out of range: at most 18 integer digits and "
            f"{MAX_FRACTION_DIGITS} decimals")
    return text


def is_currency(text: object) -> bool:
    return isinstance(text, str) and CURRENCY_RE.fullmatch(text) is not None
