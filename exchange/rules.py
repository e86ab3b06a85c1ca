"""Bitvavo's market rules, in one place: decimals, tick size, minimums, status. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

TRADING = "trading"


@dataclass(frozen=True)
class MarketRules:
    market: str
    status: str
    base: str
    quote: str
    tick_size: Decimal
    quantity_decimals: int
    notional_decimals: int
    min_order_in_base_asset: Decimal
    min_order_in_quote_asset: Decimal
    max_order_in_base_asset: Decimal
    max_order_in_quote_asset: Decimal

    @classmethod
    def from_api(cls, data: dict) -> MarketRules:
        # Bitvavo sends some integers as strings; parse leniently.
        return cls(
            market=data["market"],
            status=data["status"],
            base=data["base"],
            quote=data["quote"],
            tick_size=Decimal(str(data.get("tickSize") or "0")),
            quantity_decimals=int(data.get("quantityDecimals", 8)),
            notional_decimals=int(data.get("notionalDecimals", 2)),
            min_order_in_base_asset=Decimal(str(data.get("minOrderInBaseAsset", "0"))),
            min_order_in_quote_asset=Decimal(str(data.get("minOrderInQuoteAsset", "0"))),
            max_order_in_base_asset=Decimal(str(data.get("maxOrderInBaseAsset", "1e12"))),
            max_order_in_quote_asset=Decimal(str(data.get("maxOrderInQuoteAsset", "1e12"))),
        )


def truncate(value: Decimal, decimals: int) -> Decimal:
    """Cut (never round up) to at most `decimals` places: an order never exceeds its intent."""
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def to_tick(price: Decimal, tick_size: Decimal) -> Decimal:
    """The largest multiple of the tick size not above the price."""
    if tick_size <= 0:
        return price
    return (price / tick_size).to_integral_value(rounding=ROUND_DOWN) * tick_size


def decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def format_decimal(value: Decimal) -> str:
    """A plain decimal string, never scientific notation ("1e-05" is refused by Bitvavo)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def order_violation(
    rules: MarketRules, *, amount: Decimal | None = None, amount_quote: Decimal | None = None
) -> str | None:
    """The stable code of the first rule a market order breaks, or None if it is sendable."""
    if rules.status != TRADING:
        return "EXCHANGE_MARKET_NOT_TRADING"
    if (amount is None) == (amount_quote is None):
        return "EXCHANGE_INVALID_PARAMETER"
    if amount is not None:
        if amount <= 0 or decimal_places(amount) > rules.quantity_decimals:
            return "EXCHANGE_TOO_MANY_DECIMALS" if amount > 0 else "EXCHANGE_INVALID_PARAMETER"
        if amount < rules.min_order_in_base_asset:
            return "EXCHANGE_BELOW_MINIMUM"
        if amount > rules.max_order_in_base_asset:
            return "EXCHANGE_ABOVE_MAXIMUM"
    if amount_quote is not None:
        if amount_quote <= 0 or decimal_places(amount_quote) > rules.notional_decimals:
            return (
                "EXCHANGE_TOO_MANY_DECIMALS" if amount_quote > 0 else "EXCHANGE_INVALID_PARAMETER"
            )
        if amount_quote < rules.min_order_in_quote_asset:
            return "EXCHANGE_BELOW_MINIMUM"
        if amount_quote > rules.max_order_in_quote_asset:
            return "EXCHANGE_ABOVE_MAXIMUM"
    return None
