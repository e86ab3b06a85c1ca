"""The console's portfolio page (under the admin): one user's positions and profit from our
own ledger, the value history, today's and this week's profit, and the ledger download."""

from __future__ import annotations

from datetime import UTC

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from portfolio.charts import value_chart_svg
from portfolio.errors import LedgerYearInvalid
from portfolio.exports import ledger_response, ledger_year
from portfolio.formatting import eur_text, portfolio_output
from portfolio.selectors import pnl_since, portfolio_get, snapshot_list, week_start

# The page shows a user's trade history and value history.
PORTFOLIO_PERMISSIONS = ("trading.view_tradehistory", "portfolio.view_portfoliosnapshot")


def _chosen_user(request):
    """The user named by ?user=<id>, or the staff member themself."""
    chosen = request.GET.get("user")
    if not chosen:
        return request.user
    user = get_user_model().objects.filter(pk=chosen).first() if chosen.isdigit() else None
    if user is None:
        raise Http404(f"No user #{chosen}.")
    return user


def _check(request) -> None:
    if not request.user.has_perms(PORTFOLIO_PERMISSIONS):
        raise PermissionDenied


def portfolio_view(request):
    _check(request)
    user = _chosen_user(request)
    now = timezone.now()
    today = now.astimezone(UTC).date()
    portfolio = portfolio_get(user=user, now=now)
    snapshots = snapshot_list(user=user, today=today)
    periods = {
        "today": pnl_since(user=user, portfolio=portfolio, day=today),
        "this week": pnl_since(user=user, portfolio=portfolio, day=week_start(today)),
    }
    users = (
        get_user_model()
        .objects.filter(
            Q(pk=request.user.pk) | Q(trade_history__isnull=False) | Q(trading_policy__isnull=False)
        )
        .distinct()
        .order_by("username")
    )
    years = sorted({fill.executed_at.astimezone(UTC).year for fill in portfolio.fills}) or [
        today.year
    ]
    context = {
        **admin.site.each_context(request),
        "title": f"Portfolio of {user.get_username()}",
        "chosen": user,
        "users": users,
        "portfolio": portfolio_output(portfolio),
        "periods": [
            {"name": name, "since": p.since, "pnl_eur": eur_text(p.pnl_eur), "reason": p.reason}
            for name, p in periods.items()
        ],
        "chart": value_chart_svg([(s.day, s.value_eur) for s in snapshots]),
        "snapshots": snapshots[-14:],
        "years": years,
    }
    return TemplateResponse(request, "admin/portfolio/portfolio.html", context)


def portfolio_ledger_view(request):
    _check(request)
    user = _chosen_user(request)
    try:
        year = ledger_year(request.GET.get("year"), default=timezone.now().year)
    except LedgerYearInvalid as error:
        return HttpResponseBadRequest(str(error), content_type="text/plain")
    return ledger_response(user=user, year=year)
