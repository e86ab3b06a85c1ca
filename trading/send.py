"""Sending: a CLAIMED execution becomes at most one exchange order.

The one path of the execute worker, whoever claimed: a guarded compare-and-set CLAIMED ->
SUBMITTING, the order sent once, the finish. With trading/reconcile.py the only modules
(besides the tasks) that use the trade client.

Unknown outcome (timeout, dropped connection, 101, 109, 5xx): the execution stays
SUBMITTING and only the reconciler decides, by looking the order up. It is never sent
again: Bitvavo's clientOrderId is unique only among open orders, and a market order closes
at once, so a second POST could be a second order.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from exchange.errors import UNKNOWN, ExchangeError, never_reached_engine
from exchange.fills import order_is_final
from exchange.orders import TradeClient, order_wait_final
from exchange.rules_cache import market_rules
from trading.claim import (
    ExecutionOutcome,
    claim_withdraw,
    execution_claim,
    preflight_refusal_record,
)
from trading.finish import execution_fail, execution_finish_order, execution_log, jsonable
from trading.models import EmergencyStop, Policy, TradeExecution, TradeProposal

logger = logging.getLogger(__name__)

Status = TradeExecution.Status

# Why each guard refuses, as the audit trail says it.
GUARD_DETAILS = {
    "KILL_SWITCH": "Trading is off, or the emergency stop is on or unreadable, at send time.",
    "NOT_APPROVED": "The proposal is no longer approved at send time.",
    "PROPOSAL_EXPIRED": "The proposal expired before it was sent.",
}


def send_guards() -> tuple[tuple[str, Exists], ...]:
    """What must hold, now, for an order to go out, each with the code it refuses with.

    The compare-and-set to SUBMITTING requires all of them in its one statement, and a
    refusal's code is read from the same expressions: one rule decides "may send".
    """
    now = timezone.now()
    proposal = TradeProposal.objects.filter(pk=OuterRef("proposal_id"))
    return (
        # A missing stop row refuses: the stop must be there and off.
        (
            "KILL_SWITCH",
            Exists(EmergencyStop.objects.filter(pk=EmergencyStop.SINGLETON_ID, active=False)),
        ),
        (
            "KILL_SWITCH",
            Exists(Policy.objects.filter(user_id=OuterRef("user_id"), trading_enabled=True)),
        ),
        ("NOT_APPROVED", Exists(proposal.filter(status=TradeProposal.Status.APPROVED))),
        ("PROPOSAL_EXPIRED", Exists(proposal.filter(expires_at__gt=now))),
    )


def _mark_submitting(execution: TradeExecution, guards=None) -> bool:
    """CLAIMED -> SUBMITTING, only while every send guard holds. Exactly one caller wins."""
    now = timezone.now()
    changed = (
        TradeExecution.objects.filter(pk=execution.pk, status=Status.CLAIMED)
        .filter(*(condition for _, condition in guards or send_guards()))
        .update(status=Status.SUBMITTING, submitting_at=now, updated_at=now)
    )
    if changed:
        execution.status, execution.submitting_at = Status.SUBMITTING, now
    return changed == 1


def execution_send(*, execution: TradeExecution, client: TradeClient | None = None):
    """Sends a CLAIMED execution once; a repeat (or a duplicate task) changes nothing."""
    while True:
        guards = send_guards()
        if _mark_submitting(execution, guards):
            return _send(execution, client or TradeClient(), market_rules(execution.market))
        current = (
            TradeExecution.objects.filter(pk=execution.pk)
            .annotate(**{f"guard_{i}": condition for i, (_, condition) in enumerate(guards)})
            .first()
        )
        if current is None or current.status != Status.CLAIMED:
            # Withdrawn, or another caller is sending or has sent it.
            return ExecutionOutcome(execution=current)
        failed = [code for i, (code, _) in enumerate(guards) if not getattr(current, f"guard_{i}")]
        if failed:
            return _withdraw(current, code=failed[0])
        # Every guard holds again (it flipped back in between): try once more.


def _withdraw(execution: TradeExecution, *, code: str) -> ExecutionOutcome:
    """A guard refused before anything was sent: the claim is taken back and the refusal
    goes to the proposal's audit trail, as a refused preflight would. The proposal keeps
    its status (APPROVED can run again once the reason is gone)."""
    now = timezone.now()
    preflight = {
        "passed": False,
        "failed_codes": [code],
        "checks": [
            {"rule": "send_guard", "passed": False, "code": code, "detail": GUARD_DETAILS[code]}
        ],
        "at": now.isoformat(),
        "actor_id": None,
        "execution_id": execution.pk,
        "claimed_at": execution.claimed_at.isoformat(),
    }
    with transaction.atomic(durable=True):
        withdrawn = claim_withdraw(execution=execution)
        if withdrawn:
            preflight_refusal_record(
                proposal_id=execution.proposal_id, user_id=execution.user_id, preflight=preflight
            )
    if not withdrawn:  # another caller moved it meanwhile
        return ExecutionOutcome(execution=TradeExecution.objects.filter(pk=execution.pk).first())
    return ExecutionOutcome(execution=None, refused_codes=[code], preflight=preflight)


def _order_request(execution: TradeExecution) -> dict[str, Any]:
    return {
        "market": execution.market,
        "side": execution.side,
        "orderType": "market",
        "amountQuote": str(execution.amount_eur),
        "clientOrderId": str(execution.client_order_id),
        "operatorId": settings.BITVAVO_OPERATOR_ID,
    }


def _send(execution: TradeExecution, client: TradeClient, rules) -> ExecutionOutcome:
    """Sends the order once. With the market's rules, an order that breaks them (status,
    decimals, minimum) is refused here with the rule's code and never reaches the exchange;
    without them (unreadable), the exchange's own checks are the guard."""
    request = _order_request(execution)
    try:
        order = client.place_market_order(
            market=execution.market,
            side=execution.side,
            client_order_id=execution.client_order_id,
            amount_quote=execution.amount_eur,
            rules=rules,
        )
    except ExchangeError as error:
        if error.kind == UNKNOWN:
            return _outcome_unknown(execution, request, error)
        if error.retryable:
            # Rate limited, or the exchange was unreachable: nothing happened, send it later.
            TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
                status=Status.CLAIMED, submitting_at=None, updated_at=timezone.now()
            )
            execution.status, execution.submitting_at = Status.CLAIMED, None
            retry_after = error.extra.get("retry_after_seconds", 30)
            return ExecutionOutcome(execution=execution, retry_after_seconds=retry_after)
        execution_fail(
            execution,
            from_status=Status.SUBMITTING,
            code=error.code,
            message=error.message,
            request=request,
            # Refused before the engine (304, authentication): the proposal can run again.
            proposal_stays_approved=never_reached_engine(error.code),
        )
        return ExecutionOutcome(execution=execution)
    except Exception as error:
        # Our own failure after the request may have gone out: treat it as unknown too.
        return _outcome_unknown(execution, request, error)
    # A market order may answer before its fills: only the final order is recorded.
    order = order_wait_final(client, order)
    if order_is_final(order):
        execution_finish_order(execution, order, request=request)
    else:
        _pending(execution, order, request)
    return ExecutionOutcome(execution=execution)


def _pending(execution: TradeExecution, order: dict, request: dict) -> None:
    """The order is at the exchange but not final yet: it stays SUBMITTING, with its order
    id, for the reconciler to finish once the exchange has filled it."""
    order_id = str(order.get("orderId") or "")
    TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
        exchange_order_id=order_id,
        bitvavo_request=request,
        bitvavo_response=jsonable(order),
        updated_at=timezone.now(),
    )
    execution.exchange_order_id = order_id
    execution_log("execution.pending", execution, exchange_order_id=order_id)


def _outcome_unknown(execution: TradeExecution, request: dict, error: Exception):
    """The order may exist: stay SUBMITTING and let the reconciler look it up."""
    code = getattr(error, "code", "EXCHANGE_OUTCOME_UNKNOWN")
    execution_log(
        "execution.unknown", execution, level=logging.WARNING, code=code, error=str(error)[:300]
    )
    TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
        bitvavo_request=request,
        error_code=code,
        error_message=str(error)[:2000],
        updated_at=timezone.now(),
    )
    return ExecutionOutcome(execution=execution)


def execution_run(
    *, proposal: TradeProposal, actor_id: int | None = None, client: TradeClient | None = None
) -> ExecutionOutcome:
    """Claims and sends in this process (the foreground command): the same claim as the
    web's, then the same send as the task's. Any repeat returns the same execution."""
    outcome = execution_claim(proposal=proposal, actor_id=actor_id)
    if outcome.execution is None or outcome.execution.status != Status.CLAIMED:
        return outcome
    sent = execution_send(execution=outcome.execution, client=client)
    if not sent.refused:
        sent.created, sent.preflight = outcome.created, outcome.preflight
    return sent
