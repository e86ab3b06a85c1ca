"""The end of an execution: SUBMITTED with its history, or FAILED, with its proposal.

One durable transaction: the compare-and-set on the execution (only the caller that moves
it from `from_status` ends it), the proposal's status and, on success, the history row.
The execution row itself is the audit of the outcome.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.logs import log_event
from notifications.services import Event, notification_enqueue
from trading.models import TradeExecution, TradeHistory, TradeProposal
from trading.validators import asset_of

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
) -> bool:
    """Ends an execution by compare-and-set; False if another caller got there first."""
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
        fields["bitvavo_response"] = _jsonable(order)
    if request is not None:
        fields["bitvavo_request"] = request
    succeeded = to_status == Status.SUBMITTED
    with transaction.atomic(durable=True):
        if not TradeExecution.objects.filter(pk=execution.pk, status=from_status).update(**fields):
            return False
        TradeProposal.objects.filter(pk=execution.proposal_id).update(
            status=TradeProposal.Status.EXECUTED if succeeded else TradeProposal.Status.FAILED,
            updated_at=now,
        )
        if succeeded and order is not None:
            TradeHistory.objects.create(
                user_id=execution.user_id,
                execution_id=execution.pk,
                market=execution.market,
                asset=asset_of(execution.market),
                side=execution.side,
                **_fill(order, now),
            )
        # After commit, ids only: no statement, and a broker failure is only logged.
        notification_enqueue(
            event=Event.EXECUTION_ENDED, user_id=execution.user_id, execution_id=execution.pk
        )
    for name, value in fields.items():
        setattr(execution, name, value)
    execution_log(
        f"execution.{to_status.lower()}",
        execution,
        level=logging.INFO if succeeded else logging.WARNING,
        code=error_code,
        exchange_order_id=execution.exchange_order_id,
    )
    return True


def execution_succeed(execution: TradeExecution, order: dict, **kw) -> bool:
    """SUBMITTING -> SUBMITTED with its history, and the proposal EXECUTED."""
    return execution_finish(
        execution, from_status=Status.SUBMITTING, to_status=Status.SUBMITTED, order=order, **kw
    )


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


def _fill(order: dict, now: datetime) -> dict[str, Any]:
    """The history row's figures, as the exchange reported the fill."""
    amount = Decimal(order.get("filledAmount") or 0)
    amount_quote = Decimal(order.get("filledAmountQuote") or 0)
    updated_ms = order.get("updated") or order.get("created")
    return {
        "amount": amount,
        "amount_eur": amount_quote,
        "price": (amount_quote / amount) if amount else Decimal("0"),
        "fee": Decimal(order.get("feePaid") or 0),
        "executed_at": datetime.fromtimestamp(int(updated_ms) / 1000, tz=UTC)
        if updated_ms
        else now,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Decimal | uuid.UUID | datetime):
        return str(value)
    return value
