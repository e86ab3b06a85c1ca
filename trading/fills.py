"""What the finish step records for an order that is final at the exchange.

Pure over the parsed fills (exchange.fills): unsaved history rows, and the fields to set on
the execution and its proposal, in one place, so that the send step and the reconciler
record a final order the same way. Nothing here saves or talks to the exchange.

- Something filled: the execution is SUBMITTED with the exchange's final status, what was
  filled, the fee in EUR and the average price; `partially_filled` when the order ended
  other than `filled` (e.g. canceledMarketProtection): the exchange's status decides, not a
  comparison of amounts (fees and rounding make every full fill a little less than asked).
  Its proposal is EXECUTED, `partially_executed` when the execution is partial.
- Nothing filled: FAILED with ORDER_NOT_FILLED and a message naming the exchange's status;
  no history; the proposal FAILED.

EUR figures are kept to 8 decimals (the columns' scale), each row's and the totals'
rounded half-even from the exact price × amount.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import F
from django.db.models.functions import Coalesce

from core.errors import DomainError
from exchange.fills import Fill, fills_total, order_is_final, order_status
from trading.models import TradeExecution, TradeHistory, TradeProposal
from trading.validators import asset_of

ORDER_NOT_FILLED = "ORDER_NOT_FILLED"
EUR_PLACES = Decimal("0.00000001")
PRICE_PLACES = Decimal("0.000000000001")

# What an execution counts for in EUR (the balance recheck): once final, what was filled
# plus its fee; while open, or with a fee not known in EUR, the whole amount asked.
COUNTED_EUR = Coalesce(F("filled_eur") + F("fee_eur"), F("amount_eur"))


class OrderNotFinal(DomainError):
    code = "ORDER_NOT_FINAL"


def history_rows_for(execution: TradeExecution, fills: list[Fill]) -> list[TradeHistory]:
    """One unsaved history row per fill of the execution's final order."""
    _require_settled(fills)
    asset = asset_of(execution.market)
    return [
        TradeHistory(
            user_id=execution.user_id,
            execution=execution,
            market=execution.market,
            asset=asset,
            side=execution.side,
            fill_id=fill.fill_id,
            amount=fill.amount,
            amount_eur=_eur(fill.amount_quote),
            price=fill.price,
            fee=fill.fee,
            fee_currency=fill.fee_currency,
            fee_eur=_eur(fill.fee_eur),
            executed_at=fill.executed_at,
        )
        for fill in fills
    ]


def execution_fill_fields(order: dict, fills: list[Fill]) -> dict:
    """The execution's fields at finish, for a final `order` and its parsed `fills`."""
    if not order_is_final(order):
        raise OrderNotFinal(
            f"The order is {order_status(order) or 'without a status'} or has unsettled "
            "fills: it is not final yet.",
            extra={"exchange_status": order_status(order)},
        )
    _require_settled(fills)
    status = order_status(order)
    total = fills_total(fills)
    fields = {
        "exchange_status": status,
        "exchange_order_id": str(order.get("orderId") or ""),
        "filled_amount": total.amount,
        "filled_eur": _eur(total.amount_quote),
        "fee_eur": _eur(total.fee_eur),
        "average_price": None
        if total.average_price is None
        else total.average_price.quantize(PRICE_PLACES, ROUND_HALF_EVEN),
    }
    if total.amount <= 0:
        return {
            **fields,
            "status": TradeExecution.Status.FAILED,
            "partially_filled": False,
            "error_code": ORDER_NOT_FILLED,
            "error_message": f"The order ended {status} with nothing filled.",
        }
    return {
        **fields,
        "status": TradeExecution.Status.SUBMITTED,
        "partially_filled": status != "filled",
        "error_code": "",
        "error_message": "",
    }


def proposal_fill_fields(execution_fields: dict) -> dict:
    """The proposal's fields at finish, from execution_fill_fields()."""
    if execution_fields["status"] == TradeExecution.Status.FAILED:
        return {"status": TradeProposal.Status.FAILED, "partially_executed": False}
    return {
        "status": TradeProposal.Status.EXECUTED,
        "partially_executed": execution_fields["partially_filled"],
    }


def _require_settled(fills: list[Fill]) -> None:
    unsettled = [fill.fill_id for fill in fills if not fill.settled or fill.fee is None]
    if unsettled:
        raise OrderNotFinal(
            "Fills without a settled fee are not recorded yet.", extra={"fills": unsettled}
        )


def _eur(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(EUR_PLACES, ROUND_HALF_EVEN)
