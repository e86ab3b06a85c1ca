"""Reads. Every user-owned read takes the user: scoping lives here, not in each view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import DecimalField, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from budget.selectors import budget_usage_counts
from exchange.models import BalanceSnapshot
from trading.errors import NotFound
from trading.fills import COUNTED_EUR
from trading.models import EmergencyStop, Policy, TradeExecution, TradeProposal
from trading.validators import RecentTrade, trade_windows


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


def proposal_pending_same(*, user, market: str, side: str) -> TradeProposal | None:
    """The user's live PENDING proposal for the same market and side, if any: a new one
    like it would only ask the same question again."""
    return (
        TradeProposal.objects.for_user(user)
        .filter(
            status=TradeProposal.Status.PENDING,
            market=market,
            side=side,
            expires_at__gt=timezone.now(),
        )
        .order_by("-created_at")
        .first()
    )


def execution_list(*, user) -> QuerySet:
    return TradeExecution.objects.for_user(user).order_by("-claimed_at")


def execution_get(*, user, execution_id: int) -> TradeExecution:
    execution = TradeExecution.objects.for_user(user).filter(pk=execution_id).first()
    if execution is None:
        raise NotFound(f"No execution #{execution_id}.", code="EXECUTION_NOT_FOUND")
    return execution


def emergency_stop_get() -> EmergencyStop:
    return EmergencyStop.objects.get(pk=EmergencyStop.SINGLETON_ID)


@dataclass(frozen=True)
class PreflightFacts:
    """What the database says about executing a proposal, read at `now`."""

    proposal: TradeProposal  # as it is now: status, expiry, overrides
    policy: Policy | None  # None: the user has none (preflight refuses)
    execution_id: int | None  # the proposal's execution, if it has one
    stop_active: bool | None  # None: no stop row (the kill-switch rule refuses)
    recent: tuple[RecentTrade, ...]  # the user's live executions in the longest window
    # The last read-only snapshot of what the order spends, less what was claimed since.
    balance: tuple[Decimal, datetime, Decimal] | None  # available, as of, claimed since
    now: datetime


def preflight_facts(*, proposal: TradeProposal, lock: bool = False) -> PreflightFacts:
    """Everything preflight reads from the database about `proposal`, in two statements.

    The first reads the proposal as it is now with its policy, its execution, the emergency
    stop and the balance; with `lock` (inside the claim's transaction) it also takes the
    user's lock, the policy row FOR UPDATE. The second, the user's live executions, runs once
    the lock is granted, with a snapshot of its own (READ COMMITTED): it sees every claim
    committed before, so caps, cooldown and anti-flip are exact. On SQLite the claim's
    transaction is BEGIN IMMEDIATE, which serialises claims the same way. Of the caller's
    `proposal` only the fields that never change (id, user, market, side) are used.
    """
    base, quote = proposal.market.split("-", 1)
    buying = proposal.side == "buy"
    snapshot = BalanceSnapshot.objects.filter(asset=quote if buying else base)
    # The account is shared: every user's claims since the snapshot count.
    claims = TradeExecution.objects.filter(
        side=proposal.side,
        status__in=TradeExecution.LIVE_STATUSES,
        claimed_at__gt=Subquery(snapshot.values("fetched_at")),
    )
    if buying:
        claims = claims.filter(market__endswith=f"-{quote}")
    else:
        claims = claims.filter(market=proposal.market)
    query = (
        TradeProposal.objects.filter(pk=proposal.pk)
        .select_related("user__trading_policy")
        .annotate(
            execution_pk=Subquery(
                TradeExecution.objects.filter(proposal_id=proposal.pk).values("pk")
            ),
            stop_active=Subquery(
                EmergencyStop.objects.filter(pk=EmergencyStop.SINGLETON_ID).values("active")
            ),
            balance_available=Subquery(snapshot.values("available")),
            balance_fetched_at=Subquery(snapshot.values("fetched_at")),
            balance_spent=Coalesce(
                Subquery(claims.order_by().values("side").annotate(t=Sum(COUNTED_EUR)).values("t")),
                Value(Decimal("0")),
                output_field=DecimalField(),
            ),
        )
    )
    row = None
    if lock:
        locking = query.filter(user__trading_policy__isnull=False)
        row = locking.select_for_update(of=("user__trading_policy",)).first()
    if row is None:  # not locking, or no policy to lock: preflight refuses then
        row = query.first()
    if row is None:
        raise TradeProposal.DoesNotExist(f"No proposal #{proposal.pk}.")
    now = timezone.now()  # after the lock was granted: no claim before it is in the future
    policy = getattr(row.user, "trading_policy", None)
    recent = []
    execution_id = row.execution_pk
    if policy is not None:
        windows = trade_windows(
            now=now,
            cooldown_minutes=policy.cooldown_minutes,
            anti_flip_minutes=policy.anti_flip_minutes,
        )
        for pk, proposal_id, market, side, claimed_at in TradeExecution.objects.filter(
            user_id=proposal.user_id,
            status__in=TradeExecution.LIVE_STATUSES,
            claimed_at__gte=windows.earliest,
        ).values_list("pk", "proposal_id", "market", "side", "claimed_at"):
            recent.append(RecentTrade(market=market, side=side, at=claimed_at))
            if proposal_id == proposal.pk:  # claimed while this waited for the lock
                execution_id = pk
    balance = None
    if row.balance_available is not None:
        balance = (row.balance_available, row.balance_fetched_at, row.balance_spent)
    return PreflightFacts(
        proposal=row,
        policy=policy,
        execution_id=execution_id,
        stop_active=row.stop_active,
        recent=tuple(recent),
        balance=balance,
        now=now,
    )


def trading_status(*, user) -> dict:
    """Where the user stands against every guard, now (the status API adds the last scan)."""
    now = timezone.now()
    policy = policy_get_for_user(user=user)
    live = TradeExecution.objects.for_user(user).exclude(status=TradeExecution.Status.FAILED)
    windows = trade_windows(now=now, cooldown_minutes=policy.cooldown_minutes)
    cooldowns = {}
    for market, claimed_at in live.filter(claimed_at__gt=windows.cooldown_start).values_list(
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
        "trades_today": live.filter(claimed_at__gte=windows.day_start).count(),
        "max_daily_trades": policy.max_daily_trades,
        "trades_this_hour": live.filter(claimed_at__gt=windows.hour_start).count(),
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
