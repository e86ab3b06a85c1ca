"""Money and prices as people read them. Display only: amounts stay exact Decimal elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# A price per unit (an average cost) of a cheap coin needs more than cents.
PRICE_DECIMALS = 8


def eur_text(value: Decimal | None) -> str | None:
    """EUR with 2 decimals, half up; None stays None."""
    if value is None:
        return None
    cents = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return str(cents if cents else CENT * 0)  # never "-0.00"


def eur(value: Decimal | None) -> str:
    """`10.00 EUR`, or `-` when unknown: the form of every amount in a sentence."""
    text = eur_text(value)
    return "-" if text is None else f"{text} EUR"


def price_text(value: Decimal | None) -> str | None:
    """EUR per unit: at least 2 decimals, at most 8, no trailing zeros beyond the cents."""
    if value is None:
        return None
    text = format(value.quantize(Decimal(1).scaleb(-PRICE_DECIMALS), ROUND_HALF_UP), "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    return f"{whole}.{fraction.ljust(2, '0')}"


def percent_text(ratio: Decimal | None, *, signed: bool = True) -> str:
    """0.01234 → `+1.23 %`; `-` when unknown."""
    if ratio is None:
        return "-"
    value = (ratio * 100).quantize(CENT, rounding=ROUND_HALF_UP)
    if not value:
        return "0.00 %"  # no sign on no move, never -0.00
    return f"{value:+} %" if signed else f"{value} %"


def time_text(at: datetime | None) -> str:
    """`2026-12-02 14:05 UTC`: minutes are what a person acts on."""
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
