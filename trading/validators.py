"""Preflight: the hard rules an order must pass right before it is sent.

Pure functions over a frozen context: no ORM, no I/O, no clock (the context carries `now`).
Every check runs every time and every result is stored, so an operator sees all the reasons
an order was refused, not only the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from core.money import eur, percent_text, price_text, time_text

CONFIDENCE_LEVELS = (0, 25, 50, 75, 100)


@dataclass(frozen=True)
class ProposalFacts:
    status: str
    market: str
    side: str
    amount_eur: Decimal
    confidence: int
    expires_at: datetime
    override_cooldown: bool = False
    override_anti_flip: bool = False
    price_at_proposal: Decimal | None = None  # the market's last price when it was stored
    override_price_drift: bool = False

    @property
    def asset(self) -> str:
        return asset_of(self.market)


@dataclass(frozen=True)
class PolicyFacts:
    trading_enabled: bool
    allowlist: tuple[str, ...]
    min_order_eur: Decimal
    max_order_eur: Decimal
    min_confidence: int
    cooldown_minutes: int
    anti_flip_minutes: int
    max_daily_trades: int
    max_trades_per_hour: int
    allocation_eur: Decimal = Decimal("0")  # the most the user may have invested at once
    max_price_drift_pct: Decimal = Decimal("1.0")


@dataclass(frozen=True)
class RecentTrade:
    """An execution of the same user that may have produced an order (not FAILED)."""

    market: str
    side: str
    at: datetime


@dataclass(frozen=True)
class MarketFacts:
    status: str  # Bitvavo's market status: "trading", "halted", "auction", ...
    min_order_in_quote: Decimal
    quote_decimals: int = 2  # the most decimals an amount in EUR may have


@dataclass(frozen=True)
class BalanceFacts:
    """What the account can spend: EUR for a buy, the asset's value in EUR for a sell."""

    available_eur: Decimal
    as_of: datetime


@dataclass(frozen=True)
class HoldingFacts:
    """The user's own share of the shared account, from their own fills and open claims.

    Open claims are the user's executions not final yet (CLAIMED, SUBMITTING): their EUR
    count in full, because their fills are not in the ledger yet.
    """

    quantity: Decimal  # of the proposal's asset, held after the user's fills (average cost)
    open_sells_eur: Decimal  # the user's open sells of that asset
    cost_basis_eur: Decimal  # of all the user's open positions
    open_buys_eur: Decimal  # the user's open buys, every market
    price: Decimal | None = None  # the asset's EUR price preflight read (sells); None: unread


@dataclass(frozen=True)
class PreflightContext:
    proposal: ProposalFacts
    policy: PolicyFacts | None  # None: the policy could not be read
    emergency_stop_active: bool | None  # None: the stop could not be read
    recent_trades: tuple[RecentTrade, ...]
    market: MarketFacts | None  # None: market rules could not be read
    balance: BalanceFacts | None  # None: no recent enough balance
    now: datetime
    holding: HoldingFacts | None = None  # None: the user's ledger could not be read
    price_now: Decimal | None = None  # the market's last price; None: it could not be read


@dataclass(frozen=True)
class CheckResult:
    rule: str
    passed: bool
    code: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class PreflightResult:
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed_codes(self) -> list[str]:
        return [check.code for check in self.checks if not check.passed and check.code]

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "failed_codes": self.failed_codes,
            "checks": [dict(vars(check)) for check in self.checks],  # flat: no deep copy
        }


def asset_of(market: str) -> str:
    return market.split("-", 1)[0]


@dataclass(frozen=True)
class TradeWindows:
    """Where the windows of the caps, cooldown and anti-flip start at one moment.

    A trade counts in the daily cap if claimed at or after `day_start` (UTC midnight), in
    the others if claimed after their start. Preflight, the status API and the dashboard
    all take their windows from here.
    """

    day_start: datetime
    hour_start: datetime
    cooldown_start: datetime
    anti_flip_start: datetime

    @property
    def earliest(self) -> datetime:
        """The start of the longest window: older trades count for nothing."""
        return min(self.day_start, self.hour_start, self.cooldown_start, self.anti_flip_start)


def trade_windows(
    *, now: datetime, cooldown_minutes: int = 0, anti_flip_minutes: int = 0
) -> TradeWindows:
    return TradeWindows(
        day_start=now.replace(hour=0, minute=0, second=0, microsecond=0),
        hour_start=now - timedelta(hours=1),
        cooldown_start=now - timedelta(minutes=cooldown_minutes),
        anti_flip_start=now - timedelta(minutes=anti_flip_minutes),
    )


def _windows(ctx: PreflightContext) -> TradeWindows:
    policy = ctx.policy
    return trade_windows(
        now=ctx.now,
        cooldown_minutes=policy.cooldown_minutes if policy else 0,
        anti_flip_minutes=policy.anti_flip_minutes if policy else 0,
    )


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _ok(rule: str, detail: str) -> CheckResult:
    return CheckResult(rule=rule, passed=True, detail=detail)


def _fail(rule: str, code: str, detail: str) -> CheckResult:
    return CheckResult(rule=rule, passed=False, code=code, detail=detail)


def check_kill_switch(ctx: PreflightContext) -> CheckResult:
    # Fails closed: a switch that cannot be read counts as stopped.
    if ctx.emergency_stop_active is None or ctx.policy is None:
        return _fail("kill_switch", "KILL_SWITCH", "The kill switch could not be read.")
    if ctx.emergency_stop_active:
        return _fail("kill_switch", "KILL_SWITCH", "The operator emergency stop is active.")
    if not ctx.policy.trading_enabled:
        return _fail("kill_switch", "KILL_SWITCH", "Trading is disabled in the user's policy.")
    return _ok("kill_switch", "Trading is enabled and no emergency stop is active.")


def check_proposal_state(ctx: PreflightContext) -> CheckResult:
    proposal = ctx.proposal
    if proposal.status != "APPROVED":
        return _fail("proposal_state", "NOT_APPROVED", f"The proposal is {proposal.status}.")
    if ctx.now >= proposal.expires_at:
        return _fail(
            "proposal_state",
            "PROPOSAL_EXPIRED",
            f"The proposal expired at {time_text(proposal.expires_at)}.",
        )
    return _ok("proposal_state", f"Approved, expires at {time_text(proposal.expires_at)}.")


def check_allowlist(ctx: PreflightContext) -> CheckResult:
    if ctx.policy is None or not ctx.policy.allowlist:
        return _fail("allowlist", "ALLOWLIST_EMPTY", "The allowlist is empty: nothing may trade.")
    if ctx.proposal.market not in ctx.policy.allowlist:
        return _fail(
            "allowlist", "MARKET_NOT_ALLOWED", f"{ctx.proposal.market} is not on the allowlist."
        )
    return _ok("allowlist", f"{ctx.proposal.market} is on the allowlist.")


def check_order_size(ctx: PreflightContext) -> CheckResult:
    amount = ctx.proposal.amount_eur
    if ctx.policy is None:
        return _fail("order_size", "ORDER_TOO_LARGE", "No policy: no order size is allowed.")
    if amount < ctx.policy.min_order_eur:
        return _fail(
            "order_size",
            "ORDER_TOO_SMALL",
            f"{eur(amount)} is below the policy minimum of {eur(ctx.policy.min_order_eur)}.",
        )
    if amount > ctx.policy.max_order_eur:
        return _fail(
            "order_size",
            "ORDER_TOO_LARGE",
            f"{eur(amount)} is above the policy maximum of {eur(ctx.policy.max_order_eur)}.",
        )
    if ctx.market is None:
        return _fail(
            "order_size", "BELOW_EXCHANGE_MINIMUM", "The exchange minimum could not be read."
        )
    if amount < ctx.market.min_order_in_quote:
        return _fail(
            "order_size",
            "BELOW_EXCHANGE_MINIMUM",
            f"{eur(amount)} is below the exchange minimum of {eur(ctx.market.min_order_in_quote)}.",
        )
    if _decimal_places(amount) > ctx.market.quote_decimals:
        # Refused rather than cut: the order must be for exactly the approved amount.
        return _fail(
            "order_size",
            "TOO_MANY_DECIMALS",
            f"{amount} EUR has more than the {ctx.market.quote_decimals} decimals the exchange "
            "allows.",
        )
    return _ok("order_size", f"{eur(amount)} is within policy and exchange limits.")


def check_confidence(ctx: PreflightContext) -> CheckResult:
    confidence = ctx.proposal.confidence
    if confidence not in CONFIDENCE_LEVELS:
        return _fail("confidence", "CONFIDENCE_INVALID", f"Confidence {confidence} is not a level.")
    minimum = ctx.policy.min_confidence if ctx.policy else 101
    if confidence < minimum:
        return _fail(
            "confidence",
            "CONFIDENCE_TOO_LOW",
            f"Confidence {confidence} is below the policy minimum of {minimum}.",
        )
    return _ok("confidence", f"Confidence {confidence} meets the minimum of {minimum}.")


def _last_trade_on_asset(ctx: PreflightContext, *, side: str | None = None) -> RecentTrade | None:
    asset = ctx.proposal.asset
    trades = [
        trade
        for trade in ctx.recent_trades
        if asset_of(trade.market) == asset and (side is None or trade.side == side)
    ]
    return max(trades, key=lambda trade: trade.at, default=None)


def check_cooldown(ctx: PreflightContext) -> CheckResult:
    if ctx.proposal.override_cooldown:
        return _ok("cooldown", "Overridden for this proposal.")
    minutes = ctx.policy.cooldown_minutes if ctx.policy else 0
    last = _last_trade_on_asset(ctx)
    if last is not None and last.at > _windows(ctx).cooldown_start:
        return _fail(
            "cooldown",
            "COOLDOWN_ACTIVE",
            f"{ctx.proposal.asset} traded at {time_text(last.at)}; the cooldown of {minutes} min "
            f"runs until {time_text(last.at + timedelta(minutes=minutes))}.",
        )
    return _ok("cooldown", f"No {ctx.proposal.asset} trade in the last {minutes} min.")


def check_anti_flip(ctx: PreflightContext) -> CheckResult:
    if ctx.proposal.override_anti_flip:
        return _ok("anti_flip", "Overridden for this proposal.")
    minutes = ctx.policy.anti_flip_minutes if ctx.policy else 0
    opposite = "sell" if ctx.proposal.side == "buy" else "buy"
    last = _last_trade_on_asset(ctx, side=opposite)
    if last is not None and last.at > _windows(ctx).anti_flip_start:
        return _fail(
            "anti_flip",
            "ANTI_FLIP",
            f"{ctx.proposal.asset} was a {opposite} at {time_text(last.at)}, within {minutes} min "
            f"(until {time_text(last.at + timedelta(minutes=minutes))}).",
        )
    return _ok("anti_flip", f"No {opposite} of {ctx.proposal.asset} in the last {minutes} min.")


def check_daily_cap(ctx: PreflightContext) -> CheckResult:
    cap = ctx.policy.max_daily_trades if ctx.policy else 0
    day_start = _windows(ctx).day_start
    count = sum(1 for trade in ctx.recent_trades if trade.at >= day_start)
    if count >= cap:
        return _fail("daily_cap", "DAILY_CAP_REACHED", f"{count} trades today; the cap is {cap}.")
    return _ok("daily_cap", f"{count} of {cap} trades today.")


def check_hourly_cap(ctx: PreflightContext) -> CheckResult:
    cap = ctx.policy.max_trades_per_hour if ctx.policy else 0
    since = _windows(ctx).hour_start
    count = sum(1 for trade in ctx.recent_trades if trade.at > since)
    if count >= cap:
        return _fail(
            "hourly_cap",
            "HOURLY_CAP_REACHED",
            f"{count} trades in the last hour; the cap is {cap}.",
        )
    return _ok("hourly_cap", f"{count} of {cap} trades in the last hour.")


def check_market_status(ctx: PreflightContext) -> CheckResult:
    if ctx.market is None:
        return _fail("market_status", "MARKET_NOT_TRADING", "The market status could not be read.")
    if ctx.market.status != "trading":
        return _fail(
            "market_status",
            "MARKET_NOT_TRADING",
            f"{ctx.proposal.market} is {ctx.market.status}.",
        )
    return _ok("market_status", f"{ctx.proposal.market} is trading.")


def check_holding(ctx: PreflightContext) -> CheckResult:
    """A sell may not exceed what the user holds of the asset, less what they are selling."""
    proposal = ctx.proposal
    if proposal.side != "sell":
        return _ok("holding", "A buy sells nothing the user holds.")
    holding, asset = ctx.holding, proposal.asset
    if holding is None or holding.price is None:
        return _fail(
            "holding",
            "INSUFFICIENT_HOLDING",
            f"The user's {asset} holding could not be valued: no price or no ledger.",
        )
    value = holding.quantity * holding.price
    free = value - holding.open_sells_eur
    held = f"The user holds {holding.quantity.normalize():f} {asset} ({eur(value)})"
    if holding.open_sells_eur:
        held += f", {eur(holding.open_sells_eur)} of it in open sells"
    asked = f"{held}; {eur(proposal.amount_eur)} asked."
    if proposal.amount_eur > free:
        return _fail("holding", "INSUFFICIENT_HOLDING", asked)
    return _ok("holding", asked)


def check_allocation(ctx: PreflightContext) -> CheckResult:
    """A buy may not take what the user has invested (open positions at cost, open buys
    and this buy) above their allocation."""
    proposal = ctx.proposal
    if proposal.side != "buy":
        return _ok("allocation", "A sell invests nothing.")
    if ctx.policy is None or ctx.holding is None:
        return _fail(
            "allocation", "ALLOCATION_EXCEEDED", "The user's allocation could not be read."
        )
    allocation, holding = ctx.policy.allocation_eur, ctx.holding
    invested = holding.cost_basis_eur + holding.open_buys_eur
    detail = (
        f"{eur(invested)} invested ({eur(holding.cost_basis_eur)} in open positions, "
        f"{eur(holding.open_buys_eur)} in open buys) + {eur(proposal.amount_eur)} asked"
    )
    if invested + proposal.amount_eur > allocation:
        return _fail(
            "allocation",
            "ALLOCATION_EXCEEDED",
            f"{detail} exceeds the allocation of {eur(allocation)}.",
        )
    return _ok("allocation", f"{detail}, within the allocation of {eur(allocation)}.")


def check_balance(ctx: PreflightContext) -> CheckResult:
    # One exchange account serves every user: its balance is shared, less all users' claims.
    what = "" if ctx.proposal.side == "buy" else f" of {ctx.proposal.asset}"
    where = "on the shared exchange account"
    if ctx.balance is None:
        return _fail(
            "balance",
            "INSUFFICIENT_BALANCE",
            f"No recent {'EUR' if not what else ctx.proposal.asset} balance {where}: "
            "it cannot be checked.",
        )
    if ctx.balance.available_eur < ctx.proposal.amount_eur:
        return _fail(
            "balance",
            "INSUFFICIENT_BALANCE",
            f"{eur(ctx.balance.available_eur)}{what} available {where}, "
            f"{eur(ctx.proposal.amount_eur)} needed.",
        )
    return _ok(
        "balance",
        f"{eur(ctx.balance.available_eur)}{what} available {where}, "
        f"{eur(ctx.proposal.amount_eur)} needed.",
    )


def drift_against(*, side: str, at_proposal: Decimal | None, now: Decimal | None) -> Decimal | None:
    """How far the market moved against a proposal since it was made, relative: positive is
    against it (a buy whose price rose, a sell whose price fell), negative its way; None
    without both prices."""
    if at_proposal is None or now is None or at_proposal <= 0:
        return None
    sign = 1 if side == "buy" else -1
    return sign * (now - at_proposal) / at_proposal


def check_price_drift(ctx: PreflightContext) -> CheckResult:
    if ctx.proposal.override_price_drift:
        return _ok("price_drift", "Overridden for this proposal.")
    at_proposal = ctx.proposal.price_at_proposal
    if at_proposal is None:
        # Stored while the exchange did not answer: there is nothing to measure from.
        return _ok("price_drift", "No price was stored with the proposal: drift not measured.")
    if ctx.price_now is None:
        return _fail("price_drift", "PRICE_DRIFT", "The price now could not be read.")
    limit = ctx.policy.max_price_drift_pct if ctx.policy else Decimal("0")
    drift = drift_against(side=ctx.proposal.side, at_proposal=at_proposal, now=ctx.price_now)
    moved = f"from {_price(at_proposal)} to {_price(ctx.price_now)}"
    if drift * 100 > limit:
        return _fail(
            "price_drift",
            "PRICE_DRIFT",
            f"The price moved {_pct(drift)} against the {ctx.proposal.side} ({moved}); "
            f"the policy allows {limit} %.",
        )
    way = "against" if drift > 0 else "in favour of"
    return _ok(
        "price_drift",
        f"The price moved {_pct(abs(drift))} {way} the {ctx.proposal.side} ({moved}); "
        f"the policy allows {limit} % against.",
    )


def _price(value: Decimal) -> str:
    return f"{price_text(value)} EUR"


def _pct(ratio: Decimal) -> str:
    return percent_text(ratio, signed=False)


CHECKS: tuple[Callable[[PreflightContext], CheckResult], ...] = (
    check_kill_switch,
    check_proposal_state,
    check_allowlist,
    check_order_size,
    check_confidence,
    check_cooldown,
    check_anti_flip,
    check_daily_cap,
    check_hourly_cap,
    check_market_status,
    check_price_drift,
    check_holding,
    check_allocation,
    check_balance,  # the account-wide recheck: the last guard
)


def preflight_run(ctx: PreflightContext) -> PreflightResult:
    return PreflightResult(checks=tuple(check(ctx) for check in CHECKS))
