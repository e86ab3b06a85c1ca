"""What an order answer says was traded: final or not, and its fills.

Pure functions over an order as Bitvavo sends it (strings) or as the trade client parses it
(Decimals): no I/O. The finish step writes history only for a final order, from its fills.

A fill's fee is converted to EUR (the quote currency of our markets) like this:
- fee in the quote currency: as is;
- fee in the base asset (the asset bought or sold): fee × that fill's price;
- any other currency: not guessed. `fee_eur` is None and the fill is `fee_unconverted`;
  the execution's fee in EUR stays unknown (NULL) and the report lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

ACTIVE_STATUSES = frozenset({"new", "awaitingTrigger", "partiallyFilled"})
# Final: the order will never trade again. Bitvavo's canceled* family, expired and rejected.
FINAL_STATUSES = frozenset(
    {
        "filled",
        "canceled",
        "canceledAuction",
        "canceledSelfTradePrevention",
        "canceledIOC",
        "canceledFOK",
        "canceledMarketProtection",
        "canceledPostOnly",
        "expired",
        "rejected",
    }
)
ZERO = Decimal("0")


@dataclass(frozen=True)
class Fill:
    fill_id: str
    executed_at: datetime
    price: Decimal
    amount: Decimal  # in the base asset
    amount_quote: Decimal  # price × amount, in the quote currency (EUR)
    fee: Decimal | None  # None until the fill is settled
    fee_currency: str
    fee_eur: Decimal | None  # None: not settled, or a currency we do not convert
    settled: bool
    taker: bool | None

    @property
    def fee_unconverted(self) -> bool:
        """Settled with a fee whose currency is neither the quote nor the base asset."""
        return self.settled and self.fee is not None and self.fee_eur is None


class Filled(NamedTuple):
    amount: Decimal  # base asset
    amount_quote: Decimal  # EUR
    fee_eur: Decimal | None  # None when any fill's fee is not known in EUR
    average_price: Decimal | None  # amount_quote / amount; None when nothing filled


def order_status(order: dict) -> str:
    return str(order.get("status") or "")


def order_is_final(order: dict | None) -> bool:
    """The order will not change any more: a final status, and every fill settled with its
    fee (a market order can answer `filled` before its fills are settled)."""
    if not order or order_status(order) not in FINAL_STATUSES:
        return False
    return all(
        fill.get("settled") is True and fill.get("fee") is not None and fill.get("feeCurrency")
        for fill in order.get("fills") or ()
    )


def order_fills(order: dict, *, market: str | None = None) -> list[Fill]:
    """The order's fills, parsed, in the exchange's order."""
    market = market or order["market"]
    base, quote = market.split("-", 1)
    return [_fill(raw, base=base, quote=quote) for raw in order.get("fills") or ()]


def fills_total(fills: list[Fill]) -> Filled:
    amount = sum((fill.amount for fill in fills), ZERO)
    amount_quote = sum((fill.amount_quote for fill in fills), ZERO)
    fees = [fill.fee_eur for fill in fills]
    fee_eur = None if any(fee is None for fee in fees) else sum(fees, ZERO)
    average = amount_quote / amount if amount else None
    return Filled(amount=amount, amount_quote=amount_quote, fee_eur=fee_eur, average_price=average)


def order_filled(order: dict) -> Filled:
    """(filled_amount, filled_eur, fee_eur, average_price) from the order's own fills."""
    return fills_total(order_fills(order))


def order_reported_filled(order: dict) -> tuple[Decimal, Decimal]:
    """The exchange's own summary of the order: (filledAmount, filledAmountQuote)."""
    return _decimal(order.get("filledAmount")), _decimal(order.get("filledAmountQuote"))


def _fill(raw: dict, *, base: str, quote: str) -> Fill:
    price, amount = _decimal(raw.get("price")), _decimal(raw.get("amount"))
    settled = raw.get("settled") is True
    fee = _decimal(raw["fee"]) if settled and raw.get("fee") is not None else None
    currency = str(raw.get("feeCurrency") or "") if fee is not None else ""
    fee_eur = None
    if fee is not None and currency == quote:
        fee_eur = fee
    elif fee is not None and currency == base:
        fee_eur = fee * price
    return Fill(
        fill_id=str(raw.get("id") or ""),
        executed_at=datetime.fromtimestamp(int(raw["timestamp"]) / 1000, tz=UTC),
        price=price,
        amount=amount,
        amount_quote=price * amount,
        fee=fee,
        fee_currency=currency,
        fee_eur=fee_eur,
        settled=settled,
        taker=raw.get("taker"),
    )


def _decimal(value) -> Decimal:
    if value is None or value == "":
        return ZERO
    return value if isinstance(value, Decimal) else Decimal(str(value))
