"""Preflight facts: what the validators need, read from the database and the exchange.

Uses only the read-only side of the exchange layer (public market rules, the balance
snapshot), so the web process can show a preview without ever loading the trade client.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from exchange.rules import MarketRules
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


# The rules this process has read, with when they were read from the exchange.
_rules_seen: dict[str, tuple[MarketRules, float]] = {}


def market_rules(market: str) -> MarketRules | None:
    """The market's rules (status, decimals, minimums) from the exchange, cached briefly.

    Rules are at most MARKET_RULES_CACHE_SECONDS old, counted from the exchange read: the
    shared cache keeps them that long, and this process keeps its copy no longer, which
    saves a cache round trip per order without making them any older. The claim checks
    them in preflight and the send step applies the same object to the order.
    """
    now = time.time()
    seen = _rules_seen.get(market)
    if seen is None or now - seen[1] >= settings.MARKET_RULES_CACHE_SECONDS:
        key = f"trading:market-rules:v2:{market}"
        seen = cache.get(key)
        if seen is None:
            try:
                rules = ReadonlyClient().market(market)
            except ExchangeError:
                logger.warning("market rules unavailable for %s", market, exc_info=True)
                return None
            if rules is None:
                return None
            seen = (rules, now)
            cache.set(key, seen, settings.MARKET_RULES_CACHE_SECONDS)
        _rules_seen[market] = seen
    return seen[0]


def market_rules_forget() -> None:
    """Drops this process's copies (the shared cache is cleared on its own)."""
    _rules_seen.clear()


def _market_facts(rules: MarketRules | None) -> MarketFacts | None:
    if rules is None:
        return None
    return MarketFacts(
        status=rules.status,
        min_order_in_quote=rules.min_order_in_quote_asset,
        quote_decimals=rules.notional_decimals,
    )


def _price(market: str) -> Decimal | None:
    try:
        return ReadonlyClient().ticker_price(market)
    except ExchangeError:
        logger.warning("price unavailable for %s", market, exc_info=True)
        return None


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


# The policy: the user's lock when claiming. Its columns are exactly what preflight and the
# policy snapshot use.
_POLICY_COLUMNS = ("id", *Policy.SNAPSHOT_FIELDS)
_POLICY_COLUMN_LIST = ", ".join(_POLICY_COLUMNS)  # the model's own names, not input
_POLICY_SQL = f"SELECT {_POLICY_COLUMN_LIST} FROM trading_policies WHERE user_id = %(user_id)s"  # noqa: S608

# Everything else preflight reads from the database, in one statement (one snapshot): the
# proposal as it is now, its execution if any, the emergency stop, the user's live
# executions in the window of caps, cooldown and anti-flip, and the balance recheck. The
# balance is the last read-only snapshot of the asset spent, less what every user claimed
# since: the account is shared, so all claims after the snapshot count.
_FACTS_SQL = """
SELECT p.status, p.market, p.side, p.amount_eur, p.confidence, p.expires_at,
       p.override_cooldown, p.override_anti_flip,
       (SELECT e.id FROM trade_executions e WHERE e.proposal_id = p.id) AS execution_id,
       (SELECT s.active FROM trading_emergency_stop s WHERE s.id = %(stop_id)s) AS stop_active,
       recent.markets, recent.sides, recent.claimed,
       balance.available, balance.fetched_at,
       (SELECT COALESCE(SUM(e.amount_eur), 0) FROM trade_executions e
         WHERE e.side = p.side AND e.market LIKE %(spent_markets)s
           AND e.status = ANY(%(live)s) AND e.claimed_at > balance.fetched_at) AS spent
FROM trade_proposals p
CROSS JOIN LATERAL (
    SELECT array_agg(e.market) AS markets, array_agg(e.side) AS sides,
           array_agg(e.claimed_at) AS claimed
    FROM trade_executions e
    WHERE e.user_id = p.user_id AND e.status = ANY(%(live)s)
      AND e.claimed_at >= %(now)s - (
          SELECT GREATEST(interval '1 day', make_interval(mins => pol.cooldown_minutes),
                          make_interval(mins => pol.anti_flip_minutes))
          FROM trading_policies pol WHERE pol.user_id = p.user_id)
) recent
LEFT JOIN exchange_balances balance ON balance.asset = %(asset)s
WHERE p.id = %(proposal_id)s
"""


@dataclass(frozen=True)
class _Facts:
    policy: Policy | None
    execution_id: int | None
    context: PreflightContext


def _facts_read(
    *,
    proposal: TradeProposal,
    now: datetime,
    rules: MarketRules | None,
    price: Decimal | None,
    lock: bool = False,
) -> _Facts:
    """The policy and every other fact, as a preflight context, in one round trip.

    Two statements sent together. With `lock`, the first takes the user's lock (the policy
    row, FOR UPDATE) and the second runs only once it is granted, with a snapshot of its own
    (READ COMMITTED): it sees every claim committed before, so caps are exact.
    """
    base, quote = proposal.market.split("-", 1)
    buying = proposal.side == "buy"
    params = {
        "user_id": proposal.user_id,
        "proposal_id": proposal.pk,
        "stop_id": EmergencyStop.SINGLETON_ID,
        "now": now,
        "live": list(LIVE_EXECUTION_STATUSES),
        "asset": quote if buying else base,
        # A buy spends the quote currency in any market; a sell spends this market's asset.
        "spent_markets": f"%-{quote}" if buying else f"{base}-{quote}",
    }
    policy_sql = f"{_POLICY_SQL} FOR UPDATE" if lock else _POLICY_SQL
    with connection.cursor() as cursor:
        cursor.execute(f"{policy_sql};\n{_FACTS_SQL}", params)
        policy_row = cursor.fetchone()
        cursor.nextset()
        row = cursor.fetchone()
    if row is None:
        raise TradeProposal.DoesNotExist(f"No proposal #{proposal.pk}.")
    policy = _policy_from_row(proposal.user_id, policy_row) if policy_row else None
    (status, market, side, amount_eur, confidence, expires_at, override_cooldown,
     override_anti_flip, execution_id, stop_active, markets, sides, claimed,
     available, fetched_at, spent) = row  # fmt: skip
    recent = tuple(
        RecentTrade(market=m, side=s, at=at)
        for m, s, at in zip(markets or (), sides or (), claimed or (), strict=True)
    )
    context = PreflightContext(
        proposal=ProposalFacts(
            status=status,
            market=market,
            side=side,
            amount_eur=amount_eur,
            confidence=confidence,
            expires_at=expires_at,
            override_cooldown=override_cooldown,
            override_anti_flip=override_anti_flip,
        ),
        policy=_policy_facts(policy) if policy else None,
        # A missing stop row reads as None: the kill-switch rule fails closed.
        emergency_stop_active=stop_active,
        recent_trades=recent if policy else (),
        market=_market_facts(rules),
        balance=_balance_facts(
            available=available,
            fetched_at=fetched_at,
            spent=spent,
            buying=buying,
            price=price,
            now=now,
        ),
        now=now,
    )
    return _Facts(policy=policy, execution_id=execution_id, context=context)


def _policy_from_row(user_id: int, row: tuple) -> Policy:
    values = dict(zip(_POLICY_COLUMNS, row, strict=True))
    if isinstance(values["allowlist"], str):  # jsonb comes back as text
        values["allowlist"] = json.loads(values["allowlist"])
    return Policy(user_id=user_id, **values)


def _balance_facts(
    *,
    available: Decimal | None,
    fetched_at: datetime | None,
    spent: Decimal,
    buying: bool,
    price: Decimal | None,
    now: datetime,
) -> BalanceFacts | None:
    """What the account can spend in EUR, or None if no recent enough snapshot says it."""
    if available is None or fetched_at is None:
        return None
    if now - fetched_at > timedelta(seconds=settings.BALANCE_MAX_AGE_SECONDS):
        return None
    if not buying:
        if price is None:
            return None
        available = available * price
    return BalanceFacts(available_eur=available - spent, as_of=fetched_at)


def preflight_preview(*, proposal: TradeProposal) -> PreflightResult:
    """What every rule would say now; writes nothing and sends nothing."""
    facts = _facts_read(
        proposal=proposal,
        now=timezone.now(),
        rules=market_rules(proposal.market),
        price=_price(proposal.market) if proposal.side == "sell" else None,
    )
    return preflight_run(facts.context)


# --- Claim ---------------------------------------------------------------------------------


@dataclass
class ExecutionOutcome:
    """What one execute call did. `execution` is None when preflight refused."""

    execution: TradeExecution | None
    created: bool = False
    refused_codes: list[str] = field(default_factory=list)
    preflight: dict[str, Any] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    # The rules preflight checked; the send step applies them to the order.
    market_rules: MarketRules | None = None

    @property
    def refused(self) -> bool:
        return self.execution is None


def _proposal_with_execution(proposal_id: int) -> tuple[TradeProposal, int | None]:
    """What the claim needs to know before the lock (who, which market, which side) and the
    id of the proposal's execution, if any, in one query."""
    user_id, market, side, execution_id = (
        TradeProposal.objects.filter(pk=proposal_id)
        .annotate(
            execution_id=Subquery(
                TradeExecution.objects.filter(proposal_id=OuterRef("pk")).values("pk")[:1]
            )
        )
        .values_list("user_id", "market", "side", "execution_id")
        .get()
    )
    proposal = TradeProposal(pk=proposal_id, user_id=user_id, market=market, side=side)
    return proposal, execution_id


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
        return ExecutionOutcome(execution=TradeExecution.objects.get(pk=execution_id))

    # Read from the exchange (or its cache) before taking the lock, so the lock is held
    # for milliseconds and never across an exchange call.
    rules = market_rules(proposal.market)
    price = _price(proposal.market) if proposal.side == "sell" else None

    try:
        with transaction.atomic():
            # The policy row is the per-user lock. No policy: nothing to lock, and the
            # kill-switch rule refuses (the default policy has trading off).
            now = timezone.now()
            facts = _facts_read(proposal=proposal, now=now, rules=rules, price=price, lock=True)
            policy = facts.policy
            if facts.execution_id is not None:
                return ExecutionOutcome(execution=TradeExecution.objects.get(pk=facts.execution_id))

            result = preflight_run(facts.context)
            preflight = {**result.as_dict(), "at": now.isoformat(), "actor_id": actor_id}
            if not result.passed:
                ProposalEvent.objects.create(
                    proposal_id=proposal.pk,
                    user_id=proposal.user_id,
                    actor_id=actor_id,
                    kind=ProposalEvent.Kind.PREFLIGHT_FAILED,
                    data=preflight,
                )
                return ExecutionOutcome(
                    execution=None, refused_codes=result.failed_codes, preflight=preflight
                )

            snapshot, policy_hash = policy.snapshot_and_hash()
            checked = facts.context.proposal
            execution = TradeExecution.objects.create(
                user_id=proposal.user_id,
                proposal_id=proposal.pk,
                client_order_id=client_order_id_for(proposal.pk),
                market=checked.market,
                side=checked.side,
                amount_eur=checked.amount_eur,
                preflight_result=preflight,
                policy_hash=policy_hash,
                policy_snapshot=snapshot,
                claimed_at=now,
                status=Status.SUBMITTING if submitting else Status.CLAIMED,
                submitting_at=now if submitting else None,
            )
    except IntegrityError:
        # The unique constraint is the last guard: another claim for this proposal won.
        return ExecutionOutcome(execution=TradeExecution.objects.get(proposal_id=proposal_id))
    return ExecutionOutcome(
        execution=execution, created=True, preflight=preflight, market_rules=rules
    )
