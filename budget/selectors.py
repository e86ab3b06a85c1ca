"""Reads on the LLM usage ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from budget.models import GptUsageLog

HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)


def budget_windows(*, now: datetime) -> tuple[datetime, datetime]:
    """(start of the UTC day, start of the last hour): the daily and hourly windows."""
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day_start, now - HOUR


def budget_usage_counts(*, user_id: int, now: datetime) -> tuple[int, int]:
    """Calls that count against the budget (RESERVED, SUCCEEDED, FAILED): (today, last hour)."""
    day_start, hour_start = budget_windows(now=now)
    # One index range scan on (user, created_at) covering both windows.
    counts = (
        GptUsageLog.objects.for_user(user_id)
        .filter(
            status__in=GptUsageLog.COUNTED,
            created_at__gte=min(day_start, hour_start),
        )
        .aggregate(
            today=Count("pk", filter=Q(created_at__gte=day_start)),
            hour=Count("pk", filter=Q(created_at__gt=hour_start)),
        )
    )
    return counts["today"], counts["hour"]


def budget_usage_summary(
    *, user_id: int, daily_limit: int, hourly_limit: int, now: datetime | None = None
) -> dict:
    """The last 24 hours by reason and model, with tokens, and what is left of each limit."""
    now = now or timezone.now()
    counted = Q(status__in=GptUsageLog.COUNTED)
    rows = (
        GptUsageLog.objects.for_user(user_id)
        .filter(created_at__gt=now - DAY)
        .values("reason", "model")
        .annotate(
            calls=Count("pk", filter=counted),
            succeeded=Count("pk", filter=Q(status=GptUsageLog.Status.SUCCEEDED)),
            failed=Count("pk", filter=Q(status=GptUsageLog.Status.FAILED)),
            reserved=Count("pk", filter=Q(status=GptUsageLog.Status.RESERVED)),
            refused=Count("pk", filter=Q(status=GptUsageLog.Status.REFUSED)),
            prompt_tokens=Sum("prompt_tokens", default=0),
            completion_tokens=Sum("completion_tokens", default=0),
            tokens_estimate=Sum("tokens_estimate", filter=counted, default=0),
        )
        .order_by("reason", "model")
    )
    today, hour = budget_usage_counts(user_id=user_id, now=now)
    return {
        "since": now - DAY,
        "by_reason_and_model": list(rows),
        "daily": {"limit": daily_limit, "used": today, "remaining": max(0, daily_limit - today)},
        "hourly": {"limit": hourly_limit, "used": hour, "remaining": max(0, hourly_limit - hour)},
    }
