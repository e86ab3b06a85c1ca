"""Display only: money stays exact Decimal everywhere else."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from core.money import eur_text, price_text
from exchange.rules import format_decimal, truncate

__all__ = ["eur_text", "price_text", "quantity_text", "position_output", "portfolio_output"]

if TYPE_CHECKING:
    from portfolio.selectors import Portfolio, ValuedPosition


# EUR and price texts are core.money's, shared with the decision screen.


def quantity_text(value: Decimal, decimals: int | None) -> str:
    """At the market's quantity decimals (cut, never rounded up: not more than is held);
    all of it when the market's rules could not be read."""
    if decimals is None:
        return format_decimal(value)
    return format(truncate(value, decimals), "f")


def position_output(valued: ValuedPosition) -> dict:
    """A position for display (the API and the console): EUR at 2 decimals."""
    position, quote = valued.position, valued.quote
    decimals = quote.quantity_decimals if quote else None
    return {
        "asset": position.asset,
        "market": position.market,
        "quantity": quantity_text(position.quantity, decimals),
        "average_cost_eur": price_text(position.average_cost_eur),
        "cost_eur": eur_text(position.cost_eur),
        "price_eur": price_text(quote.price if quote else None),
        "value_eur": eur_text(valued.value_eur),
        "unrealized_pnl_eur": eur_text(valued.unrealized_pnl_eur),
        "realized_pnl_eur": eur_text(position.realized_pnl_eur),
        "fees_eur": eur_text(position.fees_eur),
        "fills": position.fills,
        "unmatched_quantity": quantity_text(position.unmatched_quantity, decimals),
        "unmatched_proceeds_eur": eur_text(position.unmatched_proceeds_eur),
        "flags": sorted(position.flags),
        "valuation_error": valued.valuation_error,
    }


def portfolio_output(portfolio: Portfolio) -> dict:
    totals = portfolio.totals
    return {
        "valued_at": portfolio.valued_at,
        "positions": [position_output(p) for p in portfolio.positions],
        "totals": {
            **{name: eur_text(totals[name]) for name in TOTAL_EUR_FIELDS},
            "unpriced": totals["unpriced"],
        },
    }


TOTAL_EUR_FIELDS = ("cost_eur", "value_eur", "unrealized_pnl_eur", "realized_pnl_eur", "fees_eur")
