"""Writes: the daily value snapshot; queues the daily summary."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from notifications.models import NotificationEvent, NotificationSettings
from notifications.services import notification_enqueue
from portfolio.models import PortfolioSnapshot
from portfolio.selectors import daily_summary_facts, portfolio_get
from trading.models import TradeHistory

logger = logging.getLogger(__name__)


def portfolio_snapshot_take(*, user, now: datetime | None = None) -> PortfolioSnapshot:
    """Values the user's portfolio now and stores it as today's (UTC) snapshot, replacing an
    earlier one of the same day: the day's row ends as its last valuation."""
    now = now or timezone.now()
    portfolio = portfolio_get(user=user, now=now)  # exchange reads: before the transaction
    totals = portfolio.totals
    figures = {
        "value_eur": totals["value_eur"],
        "cost_eur": totals["cost_eur"],
        "unrealized_pnl_eur": totals["unrealized_pnl_eur"],
        "realized_pnl_eur": totals["realized_pnl_eur"],
        "fees_eur": totals["fees_eur"],
        "unpriced": totals["unpriced"],
        "taken_at": now,
    }
    with transaction.atomic():
        snapshot, _ = PortfolioSnapshot.objects.for_user(user).update_or_create(
            user=user, day=now.astimezone(UTC).date(), defaults=figures
        )
    return snapshot


def portfolio_snapshots_take_all(*, now: datetime | None = None) -> int:
    """Today's snapshot for every user with a fill (beat, hourly). One user's failure is
    logged and does not stop the others."""
    now = now or timezone.now()
    user_ids = TradeHistory.objects.order_by().values_list("user_id", flat=True).distinct()
    taken = 0
    for user in get_user_model().objects.filter(pk__in=list(user_ids)).order_by("pk"):
        try:
            portfolio_snapshot_take(user=user, now=now)
            taken += 1
        except Exception:
            logger.exception("portfolio snapshot failed for user %s", user.pk)
    return taken


def daily_summaries_send(*, now: datetime | None = None) -> int:
    """Queues yesterday's (UTC) summary for every user whose notifications include it (beat,
    daily just after midnight). Sent even when nothing happened: it is the heartbeat that
    says beat, workers and notifications are alive."""
    now = now or timezone.now()
    day = now.astimezone(UTC).date() - timedelta(days=1)
    recipients = [
        row
        for row in NotificationSettings.objects.select_related("user").order_by("user_id")
        if NotificationEvent.DAILY_SUMMARY in row.events and (row.webhook_url or row.email)
    ]
    for row in recipients:
        try:
            facts = daily_summary_facts(user=row.user, day=day, now=now)
        except Exception:
            logger.exception("daily summary failed for user %s", row.user_id)
            continue
        notification_enqueue(
            event=NotificationEvent.DAILY_SUMMARY, user_id=row.user_id, summary=facts
        )
    return len(recipients)
