"""Money: one canonical string per amount, Decimal only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pauction.errors import MoneyError
from p2pauction.state.money import format_money, is_currency, parse_money, parse_money_lenient


@pytest.mark.parametrize("text", ["0", "75", "75.5", "0.00000001", "999999999999999999.99999999", "10"])
def test_canonical_forms_round_trip(text: str) -> None:
    assert format_money(parse_money(text)) == text


@pytest.mark.parametrize("text", ["7,5", "1e3", "075", "-1", "NaN", "nan", "Infinity", "75.50", "75.",
                                  ".5", "", " 75", "75 ", "75\n", "1" * 19, "1.123456789", "+5", "٧٥",
                                  "0.0", "00"])
def test_bad_forms_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_money(text)


def test_non_string_refused() -> None:
    with pytest.raises(MoneyError):
        parse_money(75)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [Decimal("-1"), Decimal("NaN"), Decimal("Infinity"), Decimal("1e18"),
                                   Decimal("0.000000001")])
def test_format_refuses_unrepresentable(value: Decimal) -> None:
    with pytest.raises(MoneyError):
        format_money(value)


def test_format_normalises() -> None:
    assert format_money(Decimal("75.50")) == "75.5"
    assert format_money(Decimal("1E+2")) == "100"
    assert format_money(Decimal("-0")) == "0"
    assert format_money(Decimal("0.000")) == "0"


def test_lenient_user_input() -> None:
    assert parse_money_lenient("75.50") == Decimal("75.5")
    assert parse_money_lenient("075") == Decimal(75)
    for bad in ("7,5", "1e3", "-1", "NaN", ""):
        with pytest.raises(MoneyError):
            parse_money_lenient(bad)


def test_currency() -> None:
    assert is_currency("USDt") and is_currency("a" * 10)
    assert not any(is_currency(c) for c in ("", "a" * 11, "US$", "USD1", "ÜSD", 5))


@given(st.decimals(min_value=0, max_value=Decimal("999999999999999999.99999999"), places=8,
                   allow_nan=False, allow_infinity=False))
def test_round_trip_property(value: Decimal) -> None:
    text = format_money(value)
    assert parse_money(text) == value
    assert format_money(parse_money(text)) == text


@given(st.text(max_size=30))
def test_parse_any_text_is_money_or_money_error(text: str) -> None:
    try:
        value = parse_money(text)
    except MoneyError:
        return
    assert format_money(value) == text
