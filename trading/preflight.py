"""Preflight: the database's facts and the exchange's part (market rules, a sell's price)
put together for the pure rules in trading/validators.py.

Uses only the read-only side of the exchange layer, so the web process can show a preview
without ever loading the trade client.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from datetime import timedelta
from decimal import Decimal

from django.conf import settings

from core.scoping import scope_system
from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from exchange.rules import MarketRules
from exchange.rules_cache import market_rules
from trading.models import Policy, TradeProposal
from trading.selectors import PreflightFacts, preflight_facts
from trading.validators import (
    BalanceFacts,
    MarketFacts,
    PolicyFacts,
    PreflightContext,
    PreflightResult,
    ProposalFacts,
    asset_of,
    preflight_run,
)

logger = logging.getLogger(__name__)


def exchange_facts(proposal: TradeProposal) -> tuple[MarketRules | None, Decimal | None]:
    """The market's rules and its last price (the drift guard; a sell's holding and balance
    are valued at it): read before any lock is taken."""
    price = None
    try:
        price = ReadonlyClient().ticker_price(proposal.market)
    except ExchangeError:
        logger.warning("price unavailable for %s", proposal.market, exc_info=True)
    return market_rules(proposal.market), price


def preflight_context(
    facts: PreflightFacts, *, rules: MarketRules | None, price: Decimal | None
) -> PreflightContext:
    policy = facts.policy
    return PreflightContext(
        # The model's fields carry the same names as the facts.
        proposal=ProposalFacts(
            **{name.name: getattr(facts.proposal, name.name) for name in fields(ProposalFacts)}
        ),
        policy=_policy_facts(policy) if policy else None,
        emergency_stop_active=facts.stop_active,
        recent_trades=facts.recent,
        market=None
        if rules is None
        else MarketFacts(
            status=rules.status,
            min_order_in_quote=rules.min_order_in_quote_asset,
            quote_decimals=rules.notional_decimals,
        ),
        balance=_balance_facts(facts, price=price),
        now=facts.now,
        holding=None
        if facts.holdings is None
        else facts.holdings.facts(asset=asset_of(facts.proposal.market), price=price),
        price_now=price,
    )


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
        allocation_eur=policy.allocation_eur,
        max_price_drift_pct=policy.max_price_drift_pct,
    )


def _balance_facts(facts: PreflightFacts, *, price: Decimal | None) -> BalanceFacts | None:
    """What the account can spend in EUR, or None if no recent enough snapshot says it."""
    if facts.balance is None:
        return None
    available, fetched_at, spent = facts.balance
    if facts.now - fetched_at > timedelta(seconds=settings.BALANCE_MAX_AGE_SECONDS):
        return None
    if facts.proposal.side == "sell":
        if price is None:
            return None
        available = available * price
    return BalanceFacts(available_eur=available - spent, as_of=fetched_at)


def preflight_preview(*, proposal: TradeProposal, as_approved: bool = False) -> PreflightResult:
    """What every rule would say now; writes nothing and sends nothing.

    `as_approved` previews a PENDING proposal as if approved: what approving it would lead to.
    The caller has already read `proposal` in its own scope.
    """
    rules, price = exchange_facts(proposal)
    with scope_system():  # the balance recheck sums every user's claims
        facts = preflight_facts(proposal=proposal)
    if as_approved and facts.proposal.status == TradeProposal.Status.PENDING:
        facts.proposal.status = TradeProposal.Status.APPROVED
    return preflight_run(preflight_context(facts, rules=rules, price=price))
