"""The operator's dashboard in the admin: where every guard stands today, on one page."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.utils import timezone

from budget.models import GptUsageLog
from ops.report import holdings_balances, market_price
from scheduler.models import ScanJob
from scheduler.selectors import scan_jobs_status
from trading.models import Policy, TradeExecution
from trading.selectors import emergency_stop_get
from trading.validators import trade_windows


def dashboard_summary() -> dict:
    now = timezone.now()
    windows = trade_windows(now=now)
    day_start, hour_ago = windows.day_start, windows.hour_start
    live = ~Q(user__trade_executions__status=TradeExecution.Status.FAILED)
    users = (
        Policy.objects.select_related("user")
        .annotate(
            trades_today=Count(
                "user__trade_executions",
                filter=live & Q(user__trade_executions__claimed_at__gte=day_start),
                distinct=True,
            ),
            trades_hour=Count(
                "user__trade_executions",
                filter=live & Q(user__trade_executions__claimed_at__gt=hour_ago),
                distinct=True,
            ),
            llm_today=Count(
                "user__gpt_usage",
                filter=Q(user__gpt_usage__status__in=GptUsageLog.COUNTED)
                & Q(user__gpt_usage__created_at__gte=day_start),
                distinct=True,
            ),
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
        "users": users,
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
    context = {**admin.site.each_context(request), "title": "Dashboard", **dashboard_summary()}
    return TemplateResponse(request, "admin/dashboard.html", context)
