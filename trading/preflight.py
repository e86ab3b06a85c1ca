"""Preflight facts: what the validators need, read from the database and the exchange.

Uses only the read-only side of the exchange layer (public market rules, the balance
snapshot), so the web process can show a preview without ever loading the trade client.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone

from config.logs import log_event
from config.scoping import scope_system
from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from exchange.selectors import balance_latest
from trading.models import EmergencyStop, Policy, ProposalEvent, TradeExecution, TradeProposal
from trading.validators import (
    BalanceFacts,
    MarketFacts,
    PolicyFacts,
    PreflightContext,
    PreflightResult,
    ProposalFacts,
    RecentTrade,
    preflight_run,
)

logger = logging.getLogger(__name__)

# Fixed forever: the client order id of a proposal must be the same in every process.
CLIENT_ORDER_NAMESPACE = uuid.UUID("4f0a3b8e-2c1d-4e5f-9a6b-7c8d9e0f1a2b")


def client_order_id_for(proposal_id: int) -> uuid.UUID:
    return uuid.uuid5(CLIENT_ORDER_NAMESPACE, f"trade-proposal:{proposal_id}")


Status = TradeExecution.Status

# Executions that may have produced an order: they count for caps, cooldown and balance.
LIVE_EXECUTION_STATUSES = (
    TradeExecution.Status.CLAIMED,
    TradeExecution.Status.SUBMITTING,
    TradeExecution.Status.SUBMITTED,
)


def market_facts(market: str) -> MarketFacts | None:
    """Status and minimum from the exchange's public market list, cached briefly."""
    key = f"trading:market-rules:{market}"
    cached = cache.get(key)
    if cached is None:
        try:
            info = ReadonlyClient().market(market)
        except ExchangeError:
            logger.warning("market rules unavailable for %s", market, exc_info=True)
            return None
        if info is None:
            return None
        cached = {"status": info.status, "min_quote": str(info.min_order_in_quote_asset)}
        cache.set(key, cached, settings.MARKET_RULES_CACHE_SECONDS)
    return MarketFacts(status=cached["status"], min_order_in_quote=Decimal(cached["min_quote"]))


def _price(market: str) -> Decimal | None:
    try:
        return ReadonlyClient().ticker_price(market)
    except ExchangeError:
        logger.warning("price unavailable for %s", market, exc_info=True)
        return None


def balance_facts(proposal: TradeProposal, now: datetime) -> BalanceFacts | None:
    """What the account can spend: the last read-only snapshot less what was claimed since.

    The account is shared by every user, so claims of all users after the snapshot count.
    """
    base, quote = proposal.market.split("-", 1)
    asset = quote if proposal.side == "buy" else base
    latest = balance_latest(asset)
    if latest is None:
        return None
    available, fetched_at = latest
    if now - fetched_at > timedelta(seconds=settings.BALANCE_MAX_AGE_SECONDS):
        return None
    if proposal.side == "sell":
        price = _price(proposal.market)
        if price is None:
            return None
        available = available * price
    # All users trade through one exchange account, so every user's claims count: in a
    # user's request this one sum reads across users (only the total leaves the database).
    with scope_system():
        claimed_since = TradeExecution.objects.visible().filter(
            side=proposal.side,
            market__endswith=f"-{quote}",
            status__in=LIVE_EXECUTION_STATUSES,
            claimed_at__gt=fetched_at,
        )
        if proposal.side == "sell":
            claimed_since = claimed_since.filter(market__startswith=f"{base}-")
        spent = claimed_since.aggregate(total=Sum("amount_eur"))["total"] or Decimal("0")
    return BalanceFacts(available_eur=available - spent, as_of=fetched_at)


def emergency_stop_active() -> bool | None:
    try:
        return EmergencyStop.objects.get(pk=EmergencyStop.SINGLETON_ID).active
    except Exception:
        # Fails closed: None makes the kill-switch rule refuse.
        logger.exception("emergency stop unreadable")
        return None


def _policy_facts(policy: Policy) -> PolicyFacts:
    return PolicyFacts(
        trading_enabled=policy.trading_enabled,
        allowlist=tuple(policy.allowlist),
        min_order_eur=policy.min_order_eur,
        max_order_eur=policy.max_order_eur,
        min_confidence=policy.min_confidence,
        cooldown_minutes=policy.cooldown_minutes,
        anti_flip_minutes=policy.anti_flip_minutes,
        max_daily_trades=policy.max_daily_trades,
        max_trades_per_hour=policy.max_trades_per_hour,
    )


def _recent_trades(*, user_id: int, now: datetime, policy: Policy) -> tuple[RecentTrade, ...]:
    window = max(
        timedelta(days=1),
        timedelta(minutes=policy.cooldown_minutes),
        timedelta(minutes=policy.anti_flip_minutes),
    )
    rows = (
        TradeExecution.objects.for_user(user_id)
        .filter(claimed_at__gte=now - window, status__in=LIVE_EXECUTION_STATUSES)
        .values_list("market", "side", "claimed_at")
    )
    return tuple(RecentTrade(market=m, side=s, at=at) for m, s, at in rows)


def preflight_context_build(
    *,
    proposal: TradeProposal,
    policy: Policy | None,
    now: datetime,
    market: MarketFacts | None,
    balance: BalanceFacts | None,
) -> PreflightContext:
    return PreflightContext(
        proposal=ProposalFacts(
            status=proposal.status,
            market=proposal.market,
            side=proposal.side,
            amount_eur=proposal.amount_eur,
            confidence=proposal.confidence,
            expires_at=proposal.expires_at,
            override_cooldown=proposal.override_cooldown,
            override_anti_flip=proposal.override_anti_flip,
        ),
        policy=_policy_facts(policy) if policy else None,
        emergency_stop_active=emergency_stop_active(),
        recent_trades=_recent_trades(user_id=proposal.user_id, now=now, policy=policy)
        if policy
        else (),
        market=market,
        balance=balance,
        now=now,
    )


def preflight_preview(*, proposal: TradeProposal, as_approved: bool = False) -> PreflightResult:
    """What every rule would say now; writes nothing and sends nothing.

    `as_approved` previews a PENDING proposal as if approved: what approving it would lead to.
    """
    if as_approved and proposal.status == TradeProposal.Status.PENDING:
        proposal = copy.copy(proposal)
        proposal.status = TradeProposal.Status.APPROVED
    now = timezone.now()
    context = preflight_context_build(
        proposal=proposal,
        policy=Policy.objects.for_user(proposal.user_id).first(),
        now=now,
        market=market_facts(proposal.market),
        balance=balance_facts(proposal, now),
    )
    return preflight_run(context)


# --- Claim ---------------------------------------------------------------------------------


@dataclass
class ExecutionOutcome:
    """What one execute call did. `execution` is None when preflight refused."""

    execution: TradeExecution | None
    created: bool = False
    refused_codes: list[str] = field(default_factory=list)
    preflight: dict[str, Any] = field(default_factory=dict)
    retry_after_seconds: float | None = None

    @property
    def refused(self) -> bool:
        return self.execution is None


def _proposal_with_execution(proposal_id: int) -> tuple[TradeProposal, int | None]:
    """The proposal and the id of its execution, if any, in one query."""
    proposal = (
        TradeProposal.objects.visible()
        .annotate(
            execution_id=Subquery(
                TradeExecution.objects.filter(proposal_id=OuterRef("pk")).values("pk")[:1]
            )
        )
        .get(pk=proposal_id)
    )
    return proposal, proposal.execution_id


def execution_claim(
    *, proposal_id: int, actor_id: int | None, submitting: bool = False
) -> ExecutionOutcome:
    """Preflight and claim under the user's lock, in one transaction.

    The claim sends nothing. Web and admin claim as CLAIMED and the execute worker moves it
    on; the worker, which sends right after, claims straight into SUBMITTING: the rules were
    just checked under the lock, and one durable commit before the order is all it needs.
    A repeat returns the existing execution; a refusal claims nothing and is audited.
    """
    proposal, execution_id = _proposal_with_execution(proposal_id)
    if execution_id is not None:
        return ExecutionOutcome(execution=TradeExecution.objects.visible().get(pk=execution_id))

    # Read from the exchange before taking the lock, so the lock is held for milliseconds.
    now = timezone.now()
    market = market_facts(proposal.market)
    balance = balance_facts(proposal, now)

    try:
        with transaction.atomic():
            # The policy row is the per-user lock. No policy: nothing to lock, and the
            # kill-switch rule refuses (the default policy has trading off).
            policy = Policy.objects.for_user(proposal.user_id).select_for_update().first()
            proposal, execution_id = _proposal_with_execution(proposal_id)
            if execution_id is not None:
                return ExecutionOutcome(
                    execution=TradeExecution.objects.visible().get(pk=execution_id)
                )

            now = timezone.now()
            context = preflight_context_build(
                proposal=proposal, policy=policy, now=now, market=market, balance=balance
            )
            result = preflight_run(context)
            preflight = {**result.as_dict(), "at": now.isoformat(), "actor_id": actor_id}
            if not result.passed:
                ProposalEvent.objects.create(
                    proposal=proposal,
                    user_id=proposal.user_id,
                    actor_id=actor_id,
                    kind=ProposalEvent.Kind.PREFLIGHT_FAILED,
                    data=preflight,
                )
                log_event(
                    logger,
                    "preflight.refused",
                    level=logging.WARNING,
                    proposal_id=proposal.pk,
                    user_id=proposal.user_id,
                    codes=result.failed_codes,
                )
                return ExecutionOutcome(
                    execution=None, refused_codes=result.failed_codes, preflight=preflight
                )

            snapshot, policy_hash = policy.snapshot_and_hash()
            execution = TradeExecution.objects.create(
                user_id=proposal.user_id,
                proposal=proposal,
                client_order_id=client_order_id_for(proposal.pk),
                market=proposal.market,
                side=proposal.side,
                amount_eur=proposal.amount_eur,
                preflight_result=preflight,
                policy_hash=policy_hash,
                policy_snapshot=snapshot,
                claimed_at=now,
                status=Status.SUBMITTING if submitting else Status.CLAIMED,
                submitting_at=now if submitting else None,
            )
    except IntegrityError:
        # The unique constraint is the last guard: another claim for this proposal won.
        return ExecutionOutcome(
            execution=TradeExecution.objects.visible().get(proposal_id=proposal_id)
        )
    return ExecutionOutcome(execution=execution, created=True, preflight=preflight)
