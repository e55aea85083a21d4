"""Money as `decimal.Decimal`, with exactly one canonical string form per amount.

The spec's grammar allows at most 18 integer digits and 8 fraction digits, no sign, no exponent,
no leading zeros and no trailing fraction zeros, so that every amount has one encoding (events
must be canonical byte for byte).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Context, Decimal, InvalidOperation, localcontext


from p2pauction.errors import MoneyError

MONEY_RE: re.Pattern[str] = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{0,7}[1-9])?", re.ASCII)
CURRENCY_RE: re.Pattern[str] = re.compile(r"[A-Za-z]{1,10}", re.ASCII)
MAX_FRACTION_DIGITS = 8
MAX_AMOUNT = Decimal("999999999999999999.99999999")   # the largest amount the grammar allows
# Totals of amounts (volumes, averages) may exceed 18 integer digits and the default 28-digit
# context: they are computed exactly in this context (enough for 10^30 maximal amounts).
TOTALS_CONTEXT = Context(prec=64, traps=[InvalidOperation])


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


def sum_money(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of amounts, however many and however large (never rounded)."""
    with localcontext(TOTALS_CONTEXT):
        return sum(values, Decimal(0))


def format_total(value: Decimal) -> str:
    """A total of amounts (a sum, an average, a next minimum) as plain digits: like
    :func:`format_money` but without the 18-integer-digit limit, since a total of legal amounts
    need not be a legal amount itself."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise MoneyError(f"not a non-negative finite total: {value!r}")
    if value.is_zero():
        return "0"
    with localcontext(TOTALS_CONTEXT):
        return format(value.normalize(), "f")
