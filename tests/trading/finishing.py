"""Executions at the finish step for tests of what a final order records: a SUBMITTING
execution, its order sent, and the product's finish (trading/finish.py)."""

from decimal import Decimal

from django.utils import timezone

from tests.factories import TradeExecutionFactory
from trading.finish import execution_finish_order
from trading.models import TradeExecution

Status = TradeExecution.Status


def finish(execution: TradeExecution, order: dict) -> bool:
    return execution_finish_order(execution, order)


def submitting(side="buy", amount="20.00", market="BTC-EUR", **fields) -> TradeExecution:
    return TradeExecutionFactory(
        proposal__side=side,
        proposal__market=market,
        proposal__amount_eur=Decimal(amount),
        status=Status.SUBMITTING,
        submitting_at=timezone.now(),
        **fields,
    )


def send(client, execution: TradeExecution) -> dict:
    return client.place_market_order(
        market=execution.market,
        side=execution.side,
        client_order_id=execution.client_order_id,
        amount_quote=execution.amount_eur,
    )
