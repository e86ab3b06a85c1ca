"""The execution engine: an approved proposal becomes at most one exchange order.

The only module that uses the trade client. The steps, each in its own short transaction
(none stays open across an exchange call):

1. Under a per-user lock (the policy row), gather the facts, run preflight and claim: insert
   the execution row (CLAIMED) with a client order id derived from the proposal. The unique
   constraint on (user, proposal) is the last guard; caps, cooldown and anti-flip are exact
   because every claim of a user is serialised on the lock and counted by the next one.
2. CLAIMED -> SUBMITTING by compare-and-set, only while the kill switches are off and the
   proposal is still approved and unexpired. Exactly one caller wins it.
3. Send the order once. Success: SUBMITTED with history. Definite rejection: FAILED.
   Unknown outcome: stay SUBMITTING; only the reconciler decides, by looking the order up.
   An order whose outcome is unknown is never sent again: Bitvavo's clientOrderId is unique
   only among open orders, and a market order closes at once.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from config.logs import log_event
from exchange.errors import UNKNOWN, ExchangeError
from exchange.orders import TradeClient
from exchange.rules import MarketRules
from trading.models import (
    EmergencyStop,
    Policy,
    TradeExecution,
    TradeHistory,
    TradeProposal,
)
from trading.notifications import Event, notification_enqueue
from trading.preflight import (
    ExecutionOutcome,
    emergency_stop_active,
    execution_claim,
    market_rules,
)
from trading.validators import asset_of

logger = logging.getLogger(__name__)

Status = TradeExecution.Status


# --- Send -------------------------------------------------------------------------------------


def _mark_submitting(execution: TradeExecution) -> bool:
    """CLAIMED -> SUBMITTING, only while nothing has since forbidden the order."""
    now = timezone.now()
    changed = (
        TradeExecution.objects.filter(pk=execution.pk, status=Status.CLAIMED)
        .filter(
            Exists(Policy.objects.filter(user_id=OuterRef("user_id"), trading_enabled=True)),
            ~Exists(EmergencyStop.objects.filter(active=True)),
            Exists(
                TradeProposal.objects.filter(
                    pk=OuterRef("proposal_id"),
                    status=TradeProposal.Status.APPROVED,
                    expires_at__gt=now,
                )
            ),
        )
        .update(status=Status.SUBMITTING, submitting_at=now, updated_at=now)
    )
    if changed:
        execution.status, execution.submitting_at = Status.SUBMITTING, now
    return changed == 1


def _guard_failure_code(execution: TradeExecution) -> str:
    proposal = TradeProposal.objects.get(pk=execution.proposal_id)
    if emergency_stop_active() is not False:
        return "KILL_SWITCH"
    if not Policy.objects.filter(user_id=execution.user_id, trading_enabled=True).exists():
        return "KILL_SWITCH"
    if proposal.status != TradeProposal.Status.APPROVED:
        return "NOT_APPROVED"
    return "PROPOSAL_EXPIRED"


def _order_request(execution: TradeExecution) -> dict[str, Any]:
    return {
        "market": execution.market,
        "side": execution.side,
        "orderType": "market",
        "amountQuote": str(execution.amount_eur),
        "clientOrderId": str(execution.client_order_id),
        "operatorId": settings.BITVAVO_OPERATOR_ID,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Decimal | uuid.UUID | datetime):
        return str(value)
    return value


# Ends an execution by compare-and-set, with its proposal and (on success) its history, in
# one statement: one round trip and one commit, all or nothing. The proposal and history
# are written only if the execution row moved (PostgreSQL runs each data-modifying CTE once,
# and the later ones read the rows the first returned).
_FINISH_SQL = """
WITH finished AS (
    UPDATE trade_executions
       SET status = %(to_status)s, finished_at = %(now)s, updated_at = %(now)s,
           error_code = %(error_code)s, error_message = %(error_message)s,
           exchange_order_id = COALESCE(%(order_id)s, exchange_order_id),
           bitvavo_response = COALESCE(%(response)s::jsonb, bitvavo_response),
           bitvavo_request = COALESCE(%(request)s::jsonb, bitvavo_request)
     WHERE id = %(execution_id)s AND status = %(from_status)s
 RETURNING id, user_id, proposal_id, market, side
), proposal AS (
    UPDATE trade_proposals SET status = %(proposal_status)s, updated_at = %(now)s
     WHERE id IN (SELECT proposal_id FROM finished)
), history AS (
    INSERT INTO trade_history
           (user_id, execution_id, market, asset, side, amount, amount_eur, price, fee,
            executed_at)
    SELECT user_id, id, market, %(asset)s, side, %(amount)s::numeric,
           %(amount_quote)s::numeric, %(price)s::numeric, %(fee)s::numeric,
           %(executed_at)s::timestamptz
      FROM finished
     WHERE %(with_history)s
)
SELECT count(*) FROM finished
"""


def _finish(
    execution: TradeExecution,
    *,
    from_status: str,
    to_status: str,
    proposal_status: str,
    error_code: str = "",
    error_message: str = "",
    order: dict | None = None,
    request: dict | None = None,
) -> bool:
    """Ends an execution by compare-and-set, with its proposal and history, atomically."""
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
    # The execution row itself is the audit of the outcome; a success adds its history.
    fill = _fill(order, now) if to_status == Status.SUBMITTED and order is not None else None
    params = {
        "execution_id": execution.pk,
        "from_status": from_status,
        "to_status": to_status,
        "proposal_status": proposal_status,
        "now": now,
        "error_code": fields["error_code"],
        "error_message": fields["error_message"],
        "order_id": fields.get("exchange_order_id"),
        "response": _json_or_none(fields.get("bitvavo_response")),
        "request": _json_or_none(request),
        "with_history": fill is not None,
        "asset": asset_of(execution.market),
        **(fill or dict.fromkeys(_FILL_FIELDS)),
    }
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_FINISH_SQL, params)
            changed = cursor.fetchone()[0]
    else:
        changed = _finish_portable(execution, fields=fields, params=params)
    if not changed:
        return False
    # After commit, ids only: no statement here, and a broker failure is only logged.
    notification_enqueue(
        event=Event.EXECUTION_ENDED, user_id=execution.user_id, execution_id=execution.pk
    )
    for name, value in fields.items():
        setattr(execution, name, value)
    _log(
        f"execution.{to_status.lower()}",
        execution,
        level=logging.INFO if to_status == Status.SUBMITTED else logging.WARNING,
        code=error_code,
        exchange_order_id=execution.exchange_order_id,
    )
    return True


def _log(event: str, execution: TradeExecution, *, level: int = logging.INFO, **fields) -> None:
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


def _finish_portable(execution: TradeExecution, *, fields: dict, params: dict) -> bool:
    """What _FINISH_SQL does, through the ORM in one transaction: for SQLite (the demo)."""
    with transaction.atomic():
        if not TradeExecution.objects.filter(pk=execution.pk, status=params["from_status"]).update(
            **fields
        ):
            return False
        TradeProposal.objects.filter(pk=execution.proposal_id).update(
            status=params["proposal_status"], updated_at=params["now"]
        )
        if params["with_history"]:
            TradeHistory.objects.create(
                user_id=execution.user_id,
                execution_id=execution.pk,
                market=execution.market,
                asset=params["asset"],
                side=execution.side,
                amount=params["amount"],
                amount_eur=params["amount_quote"],
                price=params["price"],
                fee=params["fee"],
                executed_at=params["executed_at"],
            )
    return True


_FILL_FIELDS = ("amount", "amount_quote", "price", "fee", "executed_at")


def _fill(order: dict, now: datetime) -> dict[str, Any]:
    """The history row's figures, as the exchange reported the fill."""
    amount = Decimal(order.get("filledAmount") or 0)
    amount_quote = Decimal(order.get("filledAmountQuote") or 0)
    updated_ms = order.get("updated") or order.get("created")
    return {
        "amount": amount,
        "amount_quote": amount_quote,
        "price": (amount_quote / amount) if amount else Decimal("0"),
        "fee": Decimal(order.get("feePaid") or 0),
        "executed_at": datetime.fromtimestamp(int(updated_ms) / 1000, tz=UTC)
        if updated_ms
        else now,
    }


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _succeed(execution: TradeExecution, order: dict, **kw) -> bool:
    """SUBMITTING -> SUBMITTED with its history, and the proposal EXECUTED."""
    return _finish(
        execution,
        from_status=Status.SUBMITTING,
        to_status=Status.SUBMITTED,
        proposal_status=TradeProposal.Status.EXECUTED,
        order=order,
        **kw,
    )


def _fail(execution: TradeExecution, *, from_status: str, code: str, message: str, **kw) -> bool:
    """Ends an execution as FAILED (and its proposal with it)."""
    return _finish(
        execution,
        from_status=from_status,
        to_status=Status.FAILED,
        proposal_status=TradeProposal.Status.FAILED,
        error_code=code,
        error_message=message,
        **kw,
    )


def _send(
    execution: TradeExecution, client: TradeClient, rules: MarketRules | None
) -> ExecutionOutcome:
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
        _fail(
            execution,
            from_status=Status.SUBMITTING,
            code=error.code,
            message=error.message,
            request=request,
        )
        return ExecutionOutcome(execution=execution)
    except Exception as error:
        # Our own failure after the request may have gone out: treat it as unknown too.
        return _outcome_unknown(execution, request, error)
    _succeed(execution, order, request=request)
    return ExecutionOutcome(execution=execution)


def _outcome_unknown(execution: TradeExecution, request: dict, error: Exception):
    """The order may exist (timeout, dropped connection, 101, 109, 5xx): stay SUBMITTING and
    let the reconciler look it up. Never send it again."""
    code = getattr(error, "code", "EXCHANGE_OUTCOME_UNKNOWN")
    _log("execution.unknown", execution, level=logging.WARNING, code=code, error=str(error)[:300])
    TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
        bitvavo_request=request,
        error_code=code,
        error_message=str(error)[:2000],
        updated_at=timezone.now(),
    )
    return ExecutionOutcome(execution=execution)


def execution_run(
    *, proposal_id: int, actor_id: int | None = None, client: TradeClient | None = None
) -> ExecutionOutcome:
    """Executes an approved proposal at most once; any repeat returns the same execution."""
    outcome = execution_claim(proposal_id=proposal_id, actor_id=actor_id, submitting=True)
    execution = outcome.execution
    if outcome.created:
        sent = _send(execution, client or TradeClient(), outcome.market_rules)
        sent.created, sent.preflight = True, outcome.preflight
        return sent
    if execution is None or execution.status != Status.CLAIMED:
        return outcome
    # A claim made elsewhere (web, admin, a crashed worker): send it if nothing forbids it now.
    if not _mark_submitting(execution):
        execution.refresh_from_db()
        if execution.status == Status.CLAIMED:
            # A kill switch flipped or the proposal expired after the claim: nothing is sent.
            code = _guard_failure_code(execution)
            _fail(
                execution,
                from_status=Status.CLAIMED,
                code=code,
                message="Stopped before sending: a guard changed after the claim.",
            )
        return outcome
    return _send(execution, client or TradeClient(), market_rules(execution.market))


# --- Reconcile --------------------------------------------------------------------------------


def _find_order(execution: TradeExecution, client: TradeClient, now: datetime) -> dict | None:
    order = client.get_order(market=execution.market, client_order_id=execution.client_order_id)
    if order is not None:
        return order
    # A lookup by client order id may miss closed orders: list the market's orders around
    # the submit time, from one access window before it.
    window = timedelta(milliseconds=settings.BITVAVO_ACCESS_WINDOW_MS)
    start_ms = int((execution.submitting_at - window).timestamp() * 1000)
    end_ms = int(now.timestamp() * 1000)
    wanted = str(execution.client_order_id)
    for candidate in client.list_orders(market=execution.market, start_ms=start_ms, end_ms=end_ms):
        if str(candidate.get("clientOrderId")) == wanted:
            return candidate
    return None


def execution_reconcile(*, execution: TradeExecution, client: TradeClient) -> str:
    """Decides one SUBMITTING execution by looking its order up. Never places an order."""
    now = timezone.now()
    try:
        order = _find_order(execution, client, now)
    except ExchangeError as error:
        logger.warning("reconcile lookup failed for execution %s: %s", execution.pk, error)
        return "lookup_failed"
    if order is not None:
        filled = Decimal(str(order.get("filledAmount") or 0)) > 0
        if filled:
            _succeed(execution, order)
            return "submitted"
        if order.get("status") in ("canceled", "cancelled", "rejected", "expired"):
            _fail(
                execution,
                from_status=Status.SUBMITTING,
                code="ORDER_NOT_FILLED",
                message=f"The order ended {order.get('status')} without a fill.",
                order=order,
            )
            return "failed"
        return "pending"

    attempts = execution.reconcile_attempts + 1
    TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
        reconcile_attempts=attempts, last_reconciled_at=now, updated_at=now
    )
    execution.reconcile_attempts = attempts
    # After the access window a delayed copy of the request would be refused by the
    # exchange (304), so "not found" can no longer turn into an order.
    window_passed = now - execution.submitting_at > timedelta(
        milliseconds=settings.BITVAVO_ACCESS_WINDOW_MS
    ) + timedelta(seconds=settings.BITVAVO_READ_TIMEOUT)
    if attempts >= settings.EXECUTION_RECONCILE_MIN_LOOKUPS and window_passed:
        _fail(
            execution,
            from_status=Status.SUBMITTING,
            code="ORDER_NOT_FOUND_AFTER_TIMEOUT",
            message=f"No order found after {attempts} lookups.",
        )
        return "failed"
    return "not_found"


def executions_reconcile(*, client: TradeClient | None = None) -> dict[str, int]:
    """Reconciles every SUBMITTING execution old enough, and fails abandoned claims.

    A CLAIMED execution never reached the exchange (sending happens only after the move to
    SUBMITTING), so an abandoned one is failed rather than finished: the market, the caps and
    the human's intent may have changed since.
    """
    now = timezone.now()
    counts: dict[str, int] = {}
    stale_claims = TradeExecution.objects.filter(
        status=Status.CLAIMED,
        claimed_at__lt=now - timedelta(seconds=settings.EXECUTION_CLAIM_STALE_SECONDS),
    )
    for execution in stale_claims:
        if _fail(
            execution,
            from_status=Status.CLAIMED,
            code="CLAIM_ABANDONED",
            message="Claimed but never sent; nothing reached the exchange.",
        ):
            counts["claim_abandoned"] = counts.get("claim_abandoned", 0) + 1

    due = TradeExecution.objects.filter(
        Q(status=Status.SUBMITTING),
        submitting_at__lt=now - timedelta(seconds=settings.EXECUTION_RECONCILE_AFTER_SECONDS),
    ).order_by("submitting_at")
    executions = list(due)
    if executions:
        client = client or TradeClient()
    for execution in executions:
        result = execution_reconcile(execution=execution, client=client)
        counts[result] = counts.get(result, 0) + 1
        _log("reconcile.outcome", execution, outcome=result, attempts=execution.reconcile_attempts)
    return counts


# --- Report -----------------------------------------------------------------------------------


def exchange_orders_between(
    *,
    markets: list[str],
    start: datetime,
    end: datetime,
    client: TradeClient | None = None,
    page: int = 1000,
) -> list[dict]:
    """Every order the exchange has in `markets` created in [start, end], paging back through
    lists of `page` (Bitvavo's maximum is 1,000). Read-only calls, with the trade key:
    Bitvavo lists orders only for a key with the Trade permission."""
    client = client or TradeClient()
    found: dict[str, dict] = {}
    for market in markets:
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        while True:
            rows = client.list_orders(market=market, start_ms=start_ms, end_ms=end_ms, limit=page)
            new = {row["orderId"]: row for row in rows if row["orderId"] not in found}
            found.update(new)
            if len(rows) < page or not new:
                break
            # Newest first: go on from the oldest millisecond of this page (inclusive, so
            # orders sharing it are not skipped; the repeats are dropped above).
            end_ms = min(int(row["created"]) for row in rows)
    return list(found.values())
