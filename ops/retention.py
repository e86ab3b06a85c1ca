"""Bounded logs: the high-volume rows past their retention are deleted in small batches.

What proves where money went is never pruned and has no rule here: calls about an order (the
trade key's, or any carrying a client order id), executions, fills, trade history, proposals
and their events, and the decision behind a proposal. Each batch is one short DELETE of at
most RETENTION_BATCH rows chosen by primary key, in its own transaction, so no hot table is
locked for long and a sweep can stop anywhere and resume on the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from budget.models import GptUsageLog
from core.logs import log_event
from evaluation.models import HORIZONS_HOURS, AdvisorDecision
from exchange.models import ExchangeCall
from notifications.models import NotificationDelivery

logger = logging.getLogger(__name__)

# The budget counts the calls of the UTC day and of the last hour: those rows always stay.
MIN_LLM_USAGE_DAYS = 2
# A decision is kept until its proposal could have been scored at every horizon.
MIN_DECISION_DAYS = max(HORIZONS_HOURS) // 24 + 1
# One run deletes at most this many batches per log; the next run goes on.
MAX_BATCHES_PER_RUN = 100


@dataclass(frozen=True)
class RetentionRule:
    name: str
    days_setting: str
    min_days: int

    def days(self) -> int:
        return max(getattr(settings, self.days_setting), self.min_days)


def _market_data_calls(cutoff: datetime) -> QuerySet:
    # Served by the partial index exchange_calls_market_data.
    return ExchangeCall.objects.filter(
        Q(client_order_id__isnull=True) & ~Q(key_role="trade"), created_at__lt=cutoff
    )


def _llm_usage(cutoff: datetime) -> QuerySet:
    # An open reservation is the budget's business (closed after 10 minutes), never pruned.
    return GptUsageLog.objects.filter(created_at__lt=cutoff).exclude(
        status=GptUsageLog.Status.RESERVED
    )


def _decisions(cutoff: datetime) -> QuerySet:
    return AdvisorDecision.objects.filter(created_at__lt=cutoff, proposal__isnull=True)


def _delivered_notifications(cutoff: datetime) -> QuerySet:
    # Served by the partial index notification_deliv_done; failed ones stay for the operator.
    return NotificationDelivery.objects.filter(
        status=NotificationDelivery.Status.DELIVERED, finished_at__lt=cutoff
    )


RULES = {
    RetentionRule("market_data_calls", "RETENTION_MARKET_DATA_CALLS_DAYS", 1): _market_data_calls,
    RetentionRule("llm_usage", "RETENTION_LLM_USAGE_DAYS", MIN_LLM_USAGE_DAYS): _llm_usage,
    RetentionRule("decisions", "RETENTION_DECISIONS_DAYS", MIN_DECISION_DAYS): _decisions,
    RetentionRule(
        "delivered_notifications", "RETENTION_DELIVERED_NOTIFICATIONS_DAYS", 1
    ): _delivered_notifications,
}


def logs_prune(*, now: datetime | None = None, max_batches: int = MAX_BATCHES_PER_RUN) -> dict:
    """Deletes what every retention rule allows, batch by batch; returns rows deleted per log."""
    now = now or timezone.now()
    batch = max(1, settings.RETENTION_BATCH)
    deleted = {}
    for rule, rows_of in RULES.items():
        cutoff = now - timedelta(days=rule.days())
        total = 0
        for _ in range(max_batches):
            rows = rows_of(cutoff)
            ids = list(rows.order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            # Autocommit: each batch commits on its own, holding its row locks only briefly.
            count, _ = rows.model.objects.filter(pk__in=ids).delete()
            total += count
            if len(ids) < batch:
                break
        deleted[rule.name] = total
        if total:
            log_event(logger, "retention.pruned", log=rule.name, rows=total, before=cutoff)
    return deleted
