"""The operator's dashboard in the admin: where every guard stands today, on one page."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.utils import timezone

from budget.models import GptUsageLog
from ops.report import holdings_balances, market_price
from scheduler.models import ScanJob
from scheduler.selectors import scan_jobs_status
from trading.models import Policy, TradeExecution
from trading.selectors import emergency_stop_get
from trading.validators import trade_windows


def _per_user(rows):
    """The number of `rows` of the policy's user, as a correlated subquery (0 for none)."""
    counts = rows.filter(user_id=OuterRef("user_id")).values("user_id").annotate(n=Count("pk"))
    return Coalesce(Subquery(counts.values("n")[:1]), 0)


# Users per page: the page's cost stays the same with thousands of users.
USERS_PER_PAGE = 50


def dashboard_summary(*, users_page: str | int | None = 1) -> dict:
    """Where every guard stands now. Users come a page at a time, in name order; an
    unreadable or out-of-range page number gives the first or the last page."""
    now = timezone.now()
    windows = trade_windows(now=now)
    day_start, hour_ago = windows.day_start, windows.hour_start
    # One indexed count per user and window (user, time) instead of joining every user's
    # whole history: the page costs the same after years of executions and LLM calls.
    live = TradeExecution.objects.exclude(status=TradeExecution.Status.FAILED)
    counted = GptUsageLog.objects.filter(status__in=GptUsageLog.COUNTED)
    users = (
        Policy.objects.select_related("user")
        .annotate(
            trades_today=_per_user(live.filter(claimed_at__gte=day_start)),
            trades_hour=_per_user(live.filter(claimed_at__gt=hour_ago)),
            llm_today=_per_user(counted.filter(created_at__gte=day_start)),
        )
        .order_by("user__username")
    )
    executions = dict(
        TradeExecution.objects.filter(claimed_at__gte=day_start)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return {
        "now": now,
        "emergency_stop": emergency_stop_get(),
        "users": Paginator(users, USERS_PER_PAGE).get_page(users_page),
        "executions_today": executions,
        "submitting": TradeExecution.objects.filter(status="SUBMITTING").count(),
        "scans": scan_jobs_status(now=now),
        "jobs": ScanJob.objects.select_related("user").order_by("-last_finished_at")[:50],
        "holdings": holdings_balances(price_of=market_price),
    }


# The dashboard shows every user's policies, executions, scans and LLM use.
DASHBOARD_PERMISSIONS = (
    "trading.view_policy",
    "trading.view_tradeexecution",
    "scheduler.view_scanjob",
    "budget.view_gptusagelog",
)


def dashboard_view(request):
    if not request.user.has_perms(DASHBOARD_PERMISSIONS):
        raise PermissionDenied
    summary = dashboard_summary(users_page=request.GET.get("page"))
    context = {**admin.site.each_context(request), "title": "Dashboard", **summary}
    return TemplateResponse(request, "admin/dashboard.html", context)
