"""The end of an execution: the exchange's final order (SUBMITTED with one history row per
fill, or FAILED with nothing filled), or FAILED before or without an order; its proposal too.

One durable transaction: the compare-and-set on the execution (only the caller that moves
it from `from_status` ends it), the proposal's status and, on success, the history rows.
The execution row itself is the audit of the outcome.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.counters import counter_add
from core.logs import log_event
from exchange.fills import order_fills
from notifications.services import Event, notification_enqueue
from trading.fills import execution_fill_fields, history_rows_for, proposal_fill_fields
from trading.flows import account_flows_add
from trading.models import TradeExecution, TradeHistory, TradeProposal

logger = logging.getLogger(__name__)

Status = TradeExecution.Status


def execution_finish(
    execution: TradeExecution,
    *,
    from_status: str,
    to_status: str,
    error_code: str = "",
    error_message: str = "",
    order: dict | None = None,
    request: dict | None = None,
    proposal_stays_approved: bool = False,
) -> bool:
    """Ends an execution by compare-and-set; False if another caller got there first.
    `proposal_stays_approved`: nothing reached the exchange's engine, so the proposal may
    run again (see execution_claim)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": to_status,
        "finished_at": now,
        "updated_at": now,
        "error_code": error_code,
        "error_message": error_message[:2000],
    }
    if order is not None:
        fields["exchange_order_id"] = order.get("orderId") or ""
        fields["bitvavo_response"] = jsonable(order)
    if request is not None:
        fields["bitvavo_request"] = request
    succeeded = to_status == Status.SUBMITTED
    with transaction.atomic(durable=True):
        if not TradeExecution.objects.filter(pk=execution.pk, status=from_status).update(**fields):
            return False
        if not proposal_stays_approved:
            TradeProposal.objects.filter(pk=execution.proposal_id).update(
                status=TradeProposal.Status.EXECUTED if succeeded else TradeProposal.Status.FAILED,
                updated_at=now,
            )
        # After commit, ids only: no statement, and a broker failure is only logged.
        notification_enqueue(
            event=Event.EXECUTION_ENDED, user_id=execution.user_id, execution_id=execution.pk
        )
    for name, value in fields.items():
        setattr(execution, name, value)
    _ended_count(execution)
    execution_log(
        f"execution.{to_status.lower()}",
        execution,
        level=logging.INFO if succeeded else logging.WARNING,
        code=error_code,
        exchange_order_id=execution.exchange_order_id,
    )
    return True


def execution_finish_order(
    execution: TradeExecution, order: dict, *, request: dict | None = None
) -> bool:
    """SUBMITTING -> the exchange's final order: SUBMITTED with one history row per fill
    (partly filled if the order ended before filling all), or FAILED ORDER_NOT_FILLED with
    nothing filled; the proposal EXECUTED (partly) or FAILED. Raises OrderNotFinal for an
    order that is still open or has unsettled fills: only a final order writes history."""
    fills = order_fills(order, market=execution.market)
    fields = execution_fill_fields(order, fills)
    now = timezone.now()
    fields |= {"finished_at": now, "updated_at": now, "bitvavo_response": jsonable(order)}
    if request is not None:
        fields["bitvavo_request"] = request
    with transaction.atomic(durable=True):
        if not TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
            **fields
        ):
            return False
        TradeProposal.objects.filter(pk=execution.proposal_id).update(
            **proposal_fill_fields(fields), updated_at=now
        )
        if fields["status"] == Status.SUBMITTED:
            rows = TradeHistory.objects.bulk_create(history_rows_for(execution, fills))
            account_flows_add(rows, order_fee_currency=str(order.get("feeCurrency") or ""))
        notification_enqueue(
            event=Event.EXECUTION_ENDED, user_id=execution.user_id, execution_id=execution.pk
        )
    for name, value in fields.items():
        setattr(execution, name, value)
    _ended_count(execution)
    succeeded = fields["status"] == Status.SUBMITTED
    execution_log(
        f"execution.{fields['status'].lower()}",
        execution,
        level=logging.INFO if succeeded else logging.WARNING,
        code=fields["error_code"],
        exchange_order_id=execution.exchange_order_id,
        partially_filled=fields["partially_filled"],
    )
    return True


def _ended_count(execution: TradeExecution) -> None:
    # For /metrics, once committed: the ended executions are counted, not re-counted per scrape.
    counter_add("executions_ended", labels=(execution.status, execution.error_code))


def execution_fail(execution: TradeExecution, *, from_status: str, code: str, message: str, **kw):
    """Ends an execution as FAILED, and its proposal with it."""
    return execution_finish(
        execution,
        from_status=from_status,
        to_status=Status.FAILED,
        error_code=code,
        error_message=message,
        **kw,
    )


def execution_log(event: str, execution: TradeExecution, *, level=logging.INFO, **fields) -> None:
    """A worker event about an execution, with its ids."""
    log_event(
        logger,
        event,
        level=level,
        execution_id=execution.pk,
        proposal_id=execution.proposal_id,
        user_id=execution.user_id,
        **fields,
    )


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, Decimal | uuid.UUID | datetime):
        return str(value)
    return value
