"""The finish step as the trade path will run it with trading/fills.py, for tests of what a
final order records: compare-and-set the execution from SUBMITTING, its proposal and one
history row per fill, in one transaction."""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from exchange.fills import order_fills
from tests.factories import TradeExecutionFactory
from trading.fills import execution_fill_fields, history_rows_for, proposal_fill_fields
from trading.models import TradeExecution, TradeHistory, TradeProposal

Status = TradeExecution.Status


def finish(execution: TradeExecution, order: dict) -> bool:
    fills = order_fills(order)
    fields = execution_fill_fields(order, fills)
    with transaction.atomic():
        now = timezone.now()
        moved = TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
            **fields, finished_at=now, updated_at=now
        )
        if not moved:
            return False
        TradeProposal.objects.filter(pk=execution.proposal_id).update(
            **proposal_fill_fields(fields), updated_at=now
        )
        if fields["status"] == Status.SUBMITTED:
            TradeHistory.objects.bulk_create(history_rows_for(execution, fills))
    return True


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
