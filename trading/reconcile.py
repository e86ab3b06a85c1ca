"""Reconciliation: SUBMITTING executions are decided by looking their orders up at the
exchange, never by sending again; claims nobody sent are failed. Also the report's list
of the exchange's orders (Bitvavo lists orders only for a key with the Trade permission).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from exchange.errors import ExchangeError
from exchange.fills import order_is_final
from exchange.orders import TradeClient
from trading.finish import execution_fail, execution_finish_order, execution_log
from trading.models import TradeExecution

logger = logging.getLogger(__name__)

Status = TradeExecution.Status


def _margin_ms(offset_ms: int) -> int:
    """How far from a moment on the exchange's clock its orders may be stamped: the access
    window (a request is valid that long) plus the clock drift we compensate."""
    return settings.BITVAVO_ACCESS_WINDOW_MS + abs(offset_ms)


def _find_order(execution: TradeExecution, client: TradeClient, offset_ms: int) -> dict | None:
    if execution.exchange_order_id:  # sent and answered, not final then: found by its id
        order = client.get_order(market=execution.market, order_id=execution.exchange_order_id)
    else:
        order = client.get_order(market=execution.market, client_order_id=execution.client_order_id)
    if order is not None:
        return order
    # A lookup by client order id may miss closed orders: list the market's orders around
    # the submit time. The exchange stamps orders on its own clock, so the window is in
    # exchange time, widened by the access window and the drift.
    margin = _margin_ms(offset_ms)
    sent_ms = int(execution.submitting_at.timestamp() * 1000) + offset_ms
    start_ms, end_ms = sent_ms - margin, client.exchange_now_ms() + margin
    wanted = str(execution.client_order_id)
    for candidate in client.list_orders(market=execution.market, start_ms=start_ms, end_ms=end_ms):
        if str(candidate.get("clientOrderId")) == wanted:
            return candidate
    return None


def execution_reconcile(*, execution: TradeExecution, client: TradeClient) -> str:
    """Decides one SUBMITTING execution by looking its order up. Never places an order."""
    try:
        # Unknown offset: the lookup fails here, before anything is concluded.
        offset_ms = client.clock_offset_ms()
        order = _find_order(execution, client, offset_ms)
    except ExchangeError as error:
        logger.warning("reconcile lookup failed for execution %s: %s", execution.pk, error)
        return "lookup_failed"
    if order is not None:
        if not order_is_final(order):
            return "pending"  # at the exchange, not filled yet: not a "not found"
        execution_finish_order(execution, order)
        return "submitted" if execution.status == Status.SUBMITTED else "failed"

    now = timezone.now()
    attempts = execution.reconcile_attempts + 1
    TradeExecution.objects.filter(pk=execution.pk, status=Status.SUBMITTING).update(
        reconcile_attempts=attempts, updated_at=now
    )
    execution.reconcile_attempts = attempts
    if abs(offset_ms) > settings.BITVAVO_ACCESS_WINDOW_MS:
        # Compensated, but too far off to trust that a request could no longer be taken.
        return "clock_unsure"
    # After the access window (widened by the drift) a delayed copy of the request would
    # be refused by the exchange (304), so "not found" can no longer turn into an order.
    window_passed = now - execution.submitting_at > timedelta(
        milliseconds=_margin_ms(offset_ms)
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


def _next_due(now: datetime) -> TradeExecution | None:
    """The SUBMITTING execution tried least recently (never tried first), taken by a
    compare-and-set on its last try: every row gets its turn, and two reconcilers running
    at once never look the same row up in one round."""
    due = TradeExecution.objects.filter(
        status=Status.SUBMITTING,
        submitting_at__lt=now - timedelta(seconds=settings.EXECUTION_RECONCILE_AFTER_SECONDS),
    ).exclude(last_reconciled_at__gte=now)
    for execution in due.order_by(F("last_reconciled_at").asc(nulls_first=True), "submitting_at")[
        :5
    ]:
        taken = TradeExecution.objects.filter(
            pk=execution.pk,
            status=Status.SUBMITTING,
            last_reconciled_at=execution.last_reconciled_at,
        ).update(last_reconciled_at=timezone.now())
        if taken:
            return execution
    return None


def executions_reconcile(*, client: TradeClient | None = None) -> dict[str, int]:
    """Reconciles SUBMITTING executions old enough, least recently tried first, within a
    budget (EXECUTION_RECONCILE_MAX_LOOKUPS rows, EXECUTION_RECONCILE_MAX_SECONDS), and
    fails abandoned claims. What the budget leaves is first in line next run.

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

    deadline = time.monotonic() + settings.EXECUTION_RECONCILE_MAX_SECONDS
    for _ in range(settings.EXECUTION_RECONCILE_MAX_LOOKUPS):
        if time.monotonic() >= deadline:
            counts["budget_spent"] = 1
            break
        execution = _next_due(now)
        if execution is None:
            break
        client = client or TradeClient()
        result = execution_reconcile(execution=execution, client=client)
        counts[result] = counts.get(result, 0) + 1
        execution_log(
            "reconcile.outcome", execution, outcome=result, attempts=execution.reconcile_attempts
        )
    return counts


def exchange_clock_offset_ms(*, client: TradeClient | None = None) -> int:
    """The exchange's clock minus ours (ms), for comparing its timestamps with ours."""
    return (client or TradeClient()).clock_offset_ms()


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
    # In exchange time, widened by the drift: the exchange stamps orders on its own clock.
    offset = client.clock_offset_ms()
    found: dict[str, dict] = {}
    for market in markets:
        start_ms = int(start.timestamp() * 1000) + offset - abs(offset)
        end_ms = int(end.timestamp() * 1000) + offset + abs(offset)
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
