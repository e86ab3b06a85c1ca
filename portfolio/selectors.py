"""Reads: the user's fills from trade history, positions valued at the last price, the value
history, profit over a period, and the daily summary's figures. Every read takes the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.utils import timezone

from budget.selectors import budget_usage_summary
from portfolio.formatting import eur_text as eur
from portfolio.models import PortfolioSnapshot
from portfolio.valuation import Quote, currency_rate_at, market_quote
from trading.ledger import (
    BUY,
    CONTEXT,
    ZERO,
    Fill,
    Position,
    positions_from_fills,
    realized_between,
)
from trading.models import Policy, TradeHistory, TradeProposal
from trading.selectors import history_fills

# --- fills ------------------------------------------------------------------------------------


def fills_list(*, user, start: datetime | None = None, end: datetime | None = None) -> list[Fill]:
    """The user's fills in time order, in one query (the user's rows of trade_history, with
    the execution joined for the order id), fees converted to EUR."""
    rows = TradeHistory.objects.for_user(user)
    if start is not None:
        rows = rows.filter(executed_at__gte=start)
    if end is not None:
        rows = rows.filter(executed_at__lt=end)
    return history_fills(rows, rate_at=currency_rate_at)


# --- positions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValuedPosition:
    position: Position
    quote: Quote | None  # None: nothing held, nothing to price

    @property
    def value_eur(self) -> Decimal | None:
        if self.position.quantity <= 0:
            return ZERO
        if self.quote is None or self.quote.price is None:
            return None
        return CONTEXT.multiply(self.position.quantity, self.quote.price)

    @property
    def unrealized_pnl_eur(self) -> Decimal | None:
        value = self.value_eur
        return None if value is None else CONTEXT.subtract(value, self.position.cost_eur)

    @property
    def valuation_error(self) -> dict | None:
        if self.value_eur is not None:
            return None
        return {"code": self.quote.error_code, "message": self.quote.error_message}


@dataclass(frozen=True)
class Portfolio:
    positions: list[ValuedPosition]
    fills: list[Fill]
    valued_at: datetime
    totals: dict = field(default_factory=dict)

    @property
    def total_pnl_eur(self) -> Decimal | None:
        unrealized = self.totals["unrealized_pnl_eur"]
        return None if unrealized is None else self.totals["realized_pnl_eur"] + unrealized


def portfolio_get(*, user, now: datetime | None = None) -> Portfolio:
    """Every asset the user ever traded, valued at the market's last price."""
    fills = fills_list(user=user)
    positions = [
        ValuedPosition(position, market_quote(position.market) if position.quantity > 0 else None)
        for _, position in sorted(positions_from_fills(fills).items())
    ]
    unpriced = [
        {"asset": p.position.asset, "code": p.valuation_error["code"]}
        for p in positions
        if p.value_eur is None
    ]

    def total(values) -> Decimal:
        return sum(values, ZERO)

    value = None if unpriced else total(p.value_eur for p in positions)
    cost = total(p.position.cost_eur for p in positions)
    totals = {
        "cost_eur": cost,
        "value_eur": value,
        "unrealized_pnl_eur": None if value is None else value - cost,
        "realized_pnl_eur": total(p.position.realized_pnl_eur for p in positions),
        "fees_eur": total(p.position.fees_eur for p in positions),
        "unpriced": unpriced,
    }
    return Portfolio(
        positions=positions, fills=fills, valued_at=now or timezone.now(), totals=totals
    )


# --- value history and profit over a period ---------------------------------------------------


def snapshot_list(*, user, days: int = 90, today: date | None = None) -> list[PortfolioSnapshot]:
    today = today or timezone.now().astimezone(UTC).date()
    return list(
        PortfolioSnapshot.objects.for_user(user)
        .filter(day__gt=today - timedelta(days=days))
        .order_by("day")
    )


@dataclass(frozen=True)
class PeriodPnl:
    since: date
    pnl_eur: Decimal | None
    reason: str = ""  # why pnl_eur is None


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def pnl_since(*, user, portfolio: Portfolio, day: date) -> PeriodPnl:
    """Profit from the start of `day` (UTC) until the portfolio's valuation: total profit
    (realised + unrealised) now, minus the total at the last snapshot before that day. With
    no fill before the day the starting total is zero; with fills but no snapshot, unknown."""
    now_total = portfolio.total_pnl_eur
    if now_total is None:
        return PeriodPnl(day, None, "PRICE_UNAVAILABLE: a held asset has no price now.")
    start = day_start(day)
    baseline = PortfolioSnapshot.objects.for_user(user).filter(day__lt=day).order_by("-day").first()
    if baseline is not None and baseline.total_pnl_eur is not None:
        return PeriodPnl(day, now_total - baseline.total_pnl_eur)
    if not any(fill.executed_at < start for fill in portfolio.fills):
        return PeriodPnl(day, now_total)
    reason = "NO_SNAPSHOT: no valued snapshot before that day."
    return PeriodPnl(day, None, reason)


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


# --- the daily summary ------------------------------------------------------------------------


def daily_summary_facts(*, user, day: date, now: datetime | None = None) -> dict:
    """The day's trades and realised profit, the profit since the day began, the portfolio's
    value now, proposals awaiting approval and the LLM budget used: small JSON values for
    the `daily_summary` notification."""
    now = now or timezone.now()
    portfolio = portfolio_get(user=user, now=now)
    start, end = day_start(day), day_start(day + timedelta(days=1))
    fills = [f for f in portfolio.fills if start <= f.executed_at < end]
    bought = sum((f.amount_eur for f in fills if f.side == BUY), ZERO)
    sold = sum((f.amount_eur for f in fills if f.side != BUY), ZERO)
    pnl = pnl_since(user=user, portfolio=portfolio, day=day)
    policy = Policy.objects.for_user(user).first() or Policy(user=user)
    budget = budget_usage_summary(
        user_id=user.pk,
        daily_limit=policy.gpt_daily_limit,
        hourly_limit=policy.gpt_hourly_limit,
        now=now,
    )
    totals = portfolio.totals
    return {
        "day": day.isoformat(),
        "trades": {
            "fills": len(fills),
            "buys": sum(1 for f in fills if f.side == BUY),
            "sells": sum(1 for f in fills if f.side != BUY),
            "bought_eur": eur(bought),
            "sold_eur": eur(sold),
            "fees_eur": eur(sum((f.fee_eur or ZERO for f in fills), ZERO)),
        },
        "pnl": {
            "realized_eur": eur(realized_between(portfolio.fills, start=start, end=end)),
            "since_day_start_eur": eur(pnl.pnl_eur),
            "since_day_start_reason": pnl.reason,
            "unrealized_eur": eur(totals["unrealized_pnl_eur"]),
            "realized_total_eur": eur(totals["realized_pnl_eur"]),
        },
        "portfolio": {
            "value_eur": eur(totals["value_eur"]),
            "cost_eur": eur(totals["cost_eur"]),
            "unpriced": totals["unpriced"],
            "valued_at": now.isoformat(),
        },
        "proposals_pending": TradeProposal.objects.for_user(user)
        .filter(status=TradeProposal.Status.PENDING)
        .count(),
        "budget": {
            "llm_calls_last_24h": sum(row["calls"] for row in budget["by_reason_and_model"]),
            "used_today": budget["daily"]["used"],
            "daily_limit": budget["daily"]["limit"],
        },
    }
