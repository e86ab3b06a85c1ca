"""The advisor's decisions and the proposals' outcomes (read-only), and the scorecard page."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from core.admin import ReadOnlyAdmin
from evaluation.models import HORIZONS_HOURS, AdvisorDecision, ProposalOutcome
from evaluation.selectors import scorecard_get


@admin.register(AdvisorDecision)
class AdvisorDecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "user",
        "scan_job",
        "model",
        "prompt_version",
        "decision",
        "proposal",
        "stop_loss",
        "take_profit",
        "exit_horizon_hours",
        "prompt_tokens",
        "completion_tokens",
        "cost_eur",
    )
    list_filter = ("decision", "advisor", "model", "prompt_version")
    list_select_related = ("user", "scan_job__user", "proposal")
    search_fields = ("reason", "raw_reply", "invalidation")
    date_hierarchy = "created_at"


@admin.register(ProposalOutcome)
class ProposalOutcomeAdmin(ReadOnlyAdmin):
    list_display = (
        "proposal",
        "user",
        "horizon_hours",
        "candle_at",
        "entry_price",
        "price",
        "net_return",
        "hit",
        "btc_net_return",
        "shadow_net_return",
    )
    list_filter = ("horizon_hours", "hit")
    list_select_related = ("proposal", "user")
    date_hierarchy = "candle_at"


# The scorecard shows every user's proposals and what they earned.
SCORECARD_PERMISSIONS = ("evaluation.view_proposaloutcome", "trading.view_tradeproposal")
CHART = {"size": 300, "margin": 40}


def calibration_chart(by_confidence: list[dict]) -> dict:
    """Stated confidence (x) against observed hit rate (y) as SVG coordinates; the diagonal
    is a perfectly calibrated advisor."""
    size, margin = CHART["size"], CHART["margin"]
    span = size - 2 * margin

    def x(confidence) -> float:
        return margin + span * float(confidence) / 100

    def y(rate) -> float:
        return size - margin - span * float(rate)

    points = [
        {
            "x": round(x(row["confidence"]), 1),
            "y": round(y(row["hit_rate"]), 1),
            "r": min(12, 3 + row["count"] ** 0.5),
            "label": f"{row['confidence']}%: {row['hits']}/{row['count']}",
        }
        for row in by_confidence
        if row["count"]
    ]
    ticks = [
        {"at": round(x(level), 1), "y": round(y(level / 100), 1), "label": level}
        for level in (0, 25, 50, 75, 100)
    ]
    return {
        "size": size,
        "low": margin,
        "high": size - margin,
        "span": span,
        "x_labels_at": size - margin + 16,
        "y_labels_at": margin - 6,
        "points": points,
        "line": " ".join(f"{p['x']},{p['y']}" for p in points),
        "ticks": ticks,
    }


def scorecard_view(request):
    if not request.user.has_perms(SCORECARD_PERMISSIONS):
        raise PermissionDenied
    try:
        horizon = int(request.GET.get("horizon", 24))
    except ValueError:
        horizon = 24
    if horizon not in HORIZONS_HOURS:
        horizon = 24
    card = scorecard_get(user=None, horizon_hours=horizon)
    context = {
        **admin.site.each_context(request),
        "title": "Scorecard",
        "card": card,
        "horizons": HORIZONS_HOURS,
        "chart": calibration_chart(card["by_confidence"]),
    }
    return TemplateResponse(request, "admin/scorecard.html", context)
