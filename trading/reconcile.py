"""Reconciliation: SUBMITTING executions are decided by looking their orders up at the
exchange, never by sending again; claims nobody sent are failed. Also the report's list
of the exchange's orders (Bitvavo lists orders only for a key with the Trade permission).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from exchange.errors import ExchangeError
from exchange.fills import order_is_final
from exchange.orders import TradeClient
from trading.finish import execution_fail, execution_finish_order, execution_log
from trading.models import TradeExecution

logger = logging.getLogger(__name__)

Status = TradeExecution.Status


def _find_order(execution: TradeExecution, client: TradeClient, now: datetime) -> dict | None:
    if execution.exchange_order_id:  # sent and answered, not final then: found by its id
        order = client.get_order(market=execution.market, order_id=execution.exchange_order_id)
    else:
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
        if not order_is_final(order):
            return "pending"  # at the exchange, not filled yet: not a "not found"
        execution_finish_order(execution, order)
        return "submitted" if execution.status == Status.SUBMITTED else "failed"

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
        execution_fail(
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
        if execution_fail(
            execution,
            from_status=Status.CLAIMED,
            code="CLAIM_ABANDONED",
            message="Claimed but never sent; nothing reached the exchange.",
        ):
            counts["claim_abandoned"] = counts.get("claim_abandoned", 0) + 1

    due = TradeExecution.objects.filter(
        status=Status.SUBMITTING,
        submitting_at__lt=now - timedelta(seconds=settings.EXECUTION_RECONCILE_AFTER_SECONDS),
    ).order_by("submitting_at")
    executions = list(due)
    if executions:
        client = client or TradeClient()
    for execution in executions:
        result = execution_reconcile(execution=execution, client=client)
        counts[result] = counts.get(result, 0) + 1
        execution_log(
            "reconcile.outcome", execution, outcome=result, attempts=execution.reconcile_attempts
        )
    return counts


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
