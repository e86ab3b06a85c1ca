"""Reads. Every user-owned read takes the user: scoping lives here, not in each view."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import DecimalField, F, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from budget.selectors import budget_usage_counts
from exchange.models import BalanceSnapshot
from trading.errors import NotFound
from trading.fills import COUNTED_EUR
from trading.ledger import (
    Fill,
    Position,
    fee_in_eur,
    position_from_state,
    position_state,
    positions_from_fills,
)
from trading.models import (
    AccountFlow,
    EmergencyStop,
    LedgerCheckpoint,
    Policy,
    TradeExecution,
    TradeHistory,
    TradeProposal,
)
from trading.validators import HoldingFacts, RecentTrade, asset_of, trade_windows

logger = logging.getLogger(__name__)


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
    holdings: Holdings | None  # the user's own fills and open claims (None: no policy)
    # The last read-only snapshot of what the order spends, less what was claimed since.
    balance: tuple[Decimal, datetime, Decimal] | None  # available, as of, claimed since
    now: datetime
    # Unsaved: a new ledger checkpoint of the user's, for the claim to keep (None: not due).
    checkpoint_due: LedgerCheckpoint | None = None


def preflight_facts(*, proposal: TradeProposal, lock: bool = False) -> PreflightFacts:
    """Everything preflight reads from the database about `proposal`, in three statements.

    The first reads the proposal as it is now with its policy, its execution, the emergency
    stop and the balance; with `lock` (inside the claim's transaction) it also takes the
    user's lock, the policy row FOR UPDATE. The second, the user's live executions, runs once
    the lock is granted, with a snapshot of its own (READ COMMITTED): it sees every claim
    committed before, so caps, cooldown and anti-flip are exact; with them come the user's
    open claims. The third reads the user's fills after their ledger checkpoint (the holding
    and the cost basis of the open positions). On SQLite the claim's transaction is BEGIN
    IMMEDIATE, which serialises claims the same way. Of the caller's `proposal` only the
    fields that never change (id, user, market, side) are used.
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
        .select_related("user__trading_policy", "user__ledger_checkpoint")
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
    recent, open_claims, holdings, checkpoint_due = [], [], None, None
    execution_id = row.execution_pk
    if policy is not None:
        windows = trade_windows(
            now=now,
            cooldown_minutes=policy.cooldown_minutes,
            anti_flip_minutes=policy.anti_flip_minutes,
        )
        settled_before = now - CHECKPOINT_MARGIN
        # The window's live executions, and every open claim however old (its fills are
        # not in the ledger yet): like the caps, exact under the lock.
        live = TradeExecution.objects.filter(
            Q(claimed_at__gte=windows.earliest) | Q(status__in=OPEN_STATUSES),
            user_id=proposal.user_id,
            status__in=TradeExecution.LIVE_STATUSES,
        ).values_list("pk", "proposal_id", "market", "side", "claimed_at", "status", "amount_eur")
        for pk, proposal_id, market, side, claimed_at, status, amount_eur in live:
            if claimed_at >= windows.earliest:
                recent.append(RecentTrade(market=market, side=side, at=claimed_at))
            if status in OPEN_STATUSES:
                open_claims.append(OpenClaim(market=market, side=side, amount_eur=amount_eur))
                settled_before = min(settled_before, claimed_at - CHECKPOINT_MARGIN)
            if proposal_id == proposal.pk:  # claimed while this waited for the lock
                execution_id = pk
        # After the claims: an execution finishing in between is counted twice (as a claim
        # and in its fills: too little left), never not at all.
        ledger = ledger_positions(
            user_id=proposal.user_id,
            checkpoint=getattr(row.user, "ledger_checkpoint", None),
            settled_before=settled_before,
        )
        holdings = Holdings(positions=ledger.positions, open_claims=tuple(open_claims))
        checkpoint_due = ledger.checkpoint_due
    balance = None
    if row.balance_available is not None:
        balance = (row.balance_available, row.balance_fetched_at, row.balance_spent)
    return PreflightFacts(
        proposal=row,
        policy=policy,
        execution_id=execution_id,
        stop_active=row.stop_active,
        recent=tuple(recent),
        holdings=holdings,
        balance=balance,
        now=now,
        checkpoint_due=checkpoint_due,
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


# --- the user's own share of the account: fills and open claims --------------------------------

# Where each figure of a fill is in trade history (one row per exchange fill). Rows from
# before fills were kept carry no fee currency of their own: the order's, as the exchange
# answered it, is on the execution.
HISTORY_COLUMNS = {
    "executed_at": "executed_at",
    "market": "market",
    "asset": "asset",
    "side": "side",
    "quantity": "amount",
    "price": "price",
    "amount_eur": "amount_eur",
    "fee": "fee",
    "fee_currency": "fee_currency",
    "order_fee_currency": "execution__bitvavo_response__feeCurrency",
    "fee_eur": "fee_eur",
    "execution_id": "execution_id",
    "exchange_order_id": "execution__exchange_order_id",
    "fill_id": "fill_id",
    "history_id": "id",
}


def history_fills(rows: QuerySet, *, rate_at: Callable | None = None) -> list[Fill]:
    """Trade-history `rows` as ledger fills in time order, in one query. A fee in a third
    currency without a stored EUR value is converted by `rate_at(currency, at)` if given,
    else left unconverted (the ledger counts it as 0 and flags it)."""
    rows = rows.order_by("executed_at", "id").values(
        **{f"f_{name}": F(column) for name, column in HISTORY_COLUMNS.items()}
    )
    return [_fill(row, rate_at) for row in rows]


def _fill(row: dict, rate_at: Callable | None) -> Fill:
    values = {name[2:]: value for name, value in row.items()}
    asset, fee, price = values["asset"], values["fee"], values["price"]
    fee_currency = str(
        values["fee_currency"] or values["order_fee_currency"] or values["market"].split("-")[-1]
    ).upper()
    fee_eur = values.get("fee_eur")
    if fee_eur is None:
        needs_rate = fee and fee_currency not in ("EUR", asset.upper())
        fee_eur = fee_in_eur(
            fee=fee,
            fee_currency=fee_currency,
            asset=asset,
            price=price,
            rate=rate_at(fee_currency, values["executed_at"]) if needs_rate and rate_at else None,
        )
    return Fill(
        executed_at=values["executed_at"],
        market=values["market"],
        asset=asset,
        side=values["side"],
        quantity=values["quantity"],
        price=price,
        amount_eur=values["amount_eur"],
        fee=fee,
        fee_currency=fee_currency,
        fee_eur=fee_eur,
        execution_id=values.get("execution_id"),
        exchange_order_id=values.get("exchange_order_id") or "",
        fill_id=str(values.get("fill_id") or ""),
        history_id=values.get("history_id"),
    )


# A checkpoint stays an hour behind now and behind the user's oldest open claim: a fill
# still to be recorded belongs to an order sent after its claim, so it is executed after the
# checkpoint and cannot fall before it in ledger order (an hour is far more than the clock
# skew the exchange's signed requests allow).
CHECKPOINT_MARGIN = timedelta(hours=1)
# Settled fills a claim replays past the checkpoint before it keeps a new one.
CHECKPOINT_EVERY = 100


@dataclass(frozen=True)
class LedgerRead:
    positions: dict[str, Position]
    checkpoint_due: LedgerCheckpoint | None  # unsaved, for the claim to keep


def ledger_positions(
    *, user_id: int, checkpoint: LedgerCheckpoint | None, settled_before: datetime | None
) -> LedgerRead:
    """The user's positions now, from `checkpoint` and the fills after it (all fills
    without one), in one query. With `settled_before`, also a new checkpoint when at least
    CHECKPOINT_EVERY of those fills were executed before it."""
    rows = TradeHistory.objects.filter(user_id=user_id)
    start, counted, fills = {}, 0, None
    if checkpoint is not None:
        recorded_since = Q(id__gt=checkpoint.last_history_id)
        fills = history_fills(rows.filter(checkpoint.after() | recorded_since))
        if all((fill.executed_at, fill.history_id) > checkpoint.place for fill in fills):
            start = {
                asset: position_from_state(state) for asset, state in checkpoint.positions.items()
            }
            counted = checkpoint.fills
        else:
            # Recorded since, yet before it: the checkpoint missed a fill. Every fill again.
            logger.warning("ledger checkpoint of user %s missed a fill: replaying all", user_id)
            fills = None
    if fills is None:
        fills = history_fills(rows)
    # Ledger order is executed_at first: the settled fills are the first ones.
    settled = 0 if settled_before is None else sum(f.executed_at < settled_before for f in fills)
    if settled < CHECKPOINT_EVERY:
        return LedgerRead(positions=positions_from_fills(fills, start=start), checkpoint_due=None)
    kept = positions_from_fills(fills[:settled], start=start)
    due = checkpoint or LedgerCheckpoint(user_id=user_id)  # unsaved: a selector only reads
    due.through_executed_at = fills[settled - 1].executed_at
    due.through_history_id = fills[settled - 1].history_id
    due.fills = counted + settled
    due.last_history_id = max(
        [fill.history_id for fill in fills] + ([checkpoint.last_history_id] if checkpoint else [])
    )
    due.positions = {asset: position_state(position) for asset, position in kept.items()}
    due.taken_at = timezone.now()
    return LedgerRead(
        positions=positions_from_fills(fills[settled:], start=kept), checkpoint_due=due
    )


@dataclass(frozen=True)
class OpenClaim:
    """An execution of the user's not final yet: its fills are not in the ledger."""

    market: str
    side: str
    amount_eur: Decimal


# Claimed and not final: what the ledger does not have yet. A SUBMITTED execution is final:
# its history rows were written in the transaction that made it SUBMITTED.
OPEN_STATUSES = (TradeExecution.Status.CLAIMED, TradeExecution.Status.SUBMITTING)


@dataclass(frozen=True)
class Holdings:
    """A user's share of the shared account: positions from their own fills (average
    cost), and their open claims."""

    positions: dict[str, Position]
    open_claims: tuple[OpenClaim, ...]

    def quantity(self, asset: str) -> Decimal:
        position = self.positions.get(asset)
        return position.quantity if position else Decimal("0")

    @property
    def cost_basis_eur(self) -> Decimal:
        return sum((p.cost_eur for p in self.positions.values()), Decimal("0"))

    def open_eur(self, *, side: str, asset: str | None = None) -> Decimal:
        return sum(
            (
                claim.amount_eur
                for claim in self.open_claims
                if claim.side == side and (asset is None or asset_of(claim.market) == asset)
            ),
            Decimal("0"),
        )

    def facts(self, *, asset: str, price: Decimal | None) -> HoldingFacts:
        return HoldingFacts(
            quantity=self.quantity(asset),
            open_sells_eur=self.open_eur(side="sell", asset=asset),
            cost_basis_eur=self.cost_basis_eur,
            open_buys_eur=self.open_eur(side="buy"),
            price=price,
        )

    def allocation_left_eur(self, allocation_eur: Decimal) -> Decimal:
        """What the user may still buy for: never below 0."""
        invested = self.cost_basis_eur + self.open_eur(side="buy")
        return max(Decimal("0"), allocation_eur - invested)


def holdings_get(*, user) -> Holdings:
    """The user's holdings now, in three statements: open claims first, then the ledger
    checkpoint and the fills after it, so a claim finishing in between is counted twice (too
    little left), never not at all."""
    claims = tuple(
        OpenClaim(market=market, side=side, amount_eur=amount)
        for market, side, amount in TradeExecution.objects.for_user(user)
        .filter(status__in=OPEN_STATUSES)
        .values_list("market", "side", "amount_eur")
    )
    checkpoint = LedgerCheckpoint.objects.for_user(user).first()
    ledger = ledger_positions(user_id=user.pk, checkpoint=checkpoint, settled_before=None)
    return Holdings(positions=ledger.positions, open_claims=claims)


def account_flows_get() -> dict[str, Decimal]:
    """Per asset, what every user's fills together moved in the shared account, as kept by
    trading/flows.py: one row per asset."""
    return dict(AccountFlow.objects.values_list("asset", "amount"))
