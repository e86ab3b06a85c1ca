"""The ledger export: every fill of a year as CSV, for tax tools. Our own ledger is the
source (the exchange's /trades is known to omit fills)."""

from __future__ import annotations

import csv
import io
from datetime import date

from django.http import HttpResponse

from exchange.rules import format_decimal
from portfolio.errors import LedgerYearInvalid
from portfolio.selectors import day_start, fills_list

LEDGER_COLUMNS = (
    "time",
    "market",
    "side",
    "quantity",
    "price",
    "amount_eur",
    "fee_eur",
    "fee",
    "fee_currency",
    "execution_id",
    "exchange_order_id",
)
YEARS = (2000, 2999)


def ledger_year(value: object, *, default: int) -> int:
    """The `year` query parameter: a calendar year, or the current one when absent."""
    if value in (None, ""):
        return default
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not YEARS[0] <= int(text) <= YEARS[1]:
        raise LedgerYearInvalid(
            f"year must be a number from {YEARS[0]} to {YEARS[1]}.",
            extra={"field": "year", "value": str(value)[:20]},
        )
    return int(text)


def ledger_csv(*, user, year: int) -> str:
    """Every fill of the year (UTC), oldest first, exact figures (no rounding: a tax tool
    sums them); fee_eur is empty for a fee that could not be converted (fee and
    fee_currency say what it was)."""
    fills = fills_list(
        user=user,
        start=day_start(date(year, 1, 1)),
        end=day_start(date(year + 1, 1, 1)),
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LEDGER_COLUMNS)
    for fill in fills:
        writer.writerow(
            [
                fill.executed_at.isoformat(),
                fill.market,
                fill.side,
                format_decimal(fill.quantity),
                format_decimal(fill.price),
                format_decimal(fill.amount_eur),
                "" if fill.fee_eur is None else format_decimal(fill.fee_eur),
                format_decimal(fill.fee),
                fill.fee_currency,
                fill.execution_id or "",
                fill.exchange_order_id,
            ]
        )
    return out.getvalue()


def ledger_response(*, user, year: int) -> HttpResponse:
    response = HttpResponse(ledger_csv(user=user, year=year), content_type="text/csv")
    filename = f"ledger-{user.get_username()}-{year}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
