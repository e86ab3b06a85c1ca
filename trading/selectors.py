"""Reads. Every user-owned read takes the user: scoping lives here, not in each view."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from budget.selectors import budget_usage_counts
from trading.errors import NotFound
from trading.models import EmergencyStop, Policy, TradeExecution, TradeProposal


def policy_get_for_user(*, user) -> Policy:
    """The user's policy; without one, the default (trading off, nothing allowed), unsaved."""
    return Policy.objects.for_user(user).first() or Policy(user=user)


def proposal_list(*, user, status: str | None = None, market: str | None = None) -> QuerySet:
    proposals = TradeProposal.objects.for_user(user).order_by("-created_at")
    if status:
        proposals = proposals.filter(status=status.upper())
    if market:
        proposals = proposals.filter(market=market.upper())
    return proposals


def proposal_get(*, user, proposal_id: int) -> TradeProposal:
    # Another user's proposal is "not found", never "forbidden": its existence is not leaked.
    proposal = TradeProposal.objects.for_user(user).filter(pk=proposal_id).first()
    if proposal is None:
        raise NotFound(f"No proposal #{proposal_id}.", code="PROPOSAL_NOT_FOUND")
    return proposal


def execution_list(*, user) -> QuerySet:
    return TradeExecution.objects.for_user(user).order_by("-claimed_at")


def execution_get(*, user, execution_id: int) -> TradeExecution:
    execution = TradeExecution.objects.for_user(user).filter(pk=execution_id).first()
    if execution is None:
        raise NotFound(f"No execution #{execution_id}.", code="EXECUTION_NOT_FOUND")
    return execution


def emergency_stop_get() -> EmergencyStop:
    return EmergencyStop.objects.get(pk=EmergencyStop.SINGLETON_ID)


def trading_status(*, user) -> dict:
    """Where the user stands against every guard, now (the status API adds the last scan)."""
    now = timezone.now()
    policy = policy_get_for_user(user=user)
    live = TradeExecution.objects.for_user(user).exclude(status=TradeExecution.Status.FAILED)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    cooldown_since = now - timedelta(minutes=policy.cooldown_minutes)
    cooldowns = {}
    for market, claimed_at in live.filter(claimed_at__gt=cooldown_since).values_list(
        "market", "claimed_at"
    ):
        asset = market.split("-", 1)[0]
        ends = claimed_at + timedelta(minutes=policy.cooldown_minutes)
        cooldowns[asset] = max(cooldowns.get(asset, ends), ends)
    stop = emergency_stop_get()
    llm_today, llm_hour = budget_usage_counts(user_id=user.pk, now=now)
    return {
        "trading_enabled": policy.trading_enabled,
        "emergency_stop": {"active": stop.active, "reason": stop.reason},
        "trades_today": live.filter(claimed_at__gte=day_start).count(),
        "max_daily_trades": policy.max_daily_trades,
        "trades_this_hour": live.filter(claimed_at__gt=now - timedelta(hours=1)).count(),
        "max_trades_per_hour": policy.max_trades_per_hour,
        "active_cooldowns": [
            {"asset": asset, "until": until} for asset, until in sorted(cooldowns.items())
        ],
        "submitting_executions": TradeExecution.objects.for_user(user)
        .filter(status=TradeExecution.Status.SUBMITTING)
        .count(),
        "llm_budget_remaining": {
            "today": max(0, policy.gpt_daily_limit - llm_today),
            "this_hour": max(0, policy.gpt_hourly_limit - llm_hour),
        },
    }
