"""The decision screen's facts about one proposal, assembled in one place.

`proposal_decision(user=…, proposal=…)` reads everything a person needs to decide on a
proposal: the market's candles and price now, the drift since the proposal, the expected
fill, the holding before and after, the EUR at risk, what the advisor saw and its record,
every preflight rule's verdict, the caps and LLM budget left, the execution, and which
actions `user` may take now. The console's proposal page renders it; any other card (a chat
message) can render the same facts.

Two parts belong to apps above trading, which trading never imports: positions come from
the portfolio's ledger and the advisor's record from the evaluation app. Each registers its
reader here when it is loaded (`decision_part`, in its AppConfig.ready), as trading tells
notifications how its events read. A part whose app is not loaded, or whose read fails, is
None and the screen says it is unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.utils import timezone

from core.money import eur_text, price_text
from exchange.errors import ExchangeError
from exchange.readonly import Candle, ReadonlyClient
from exchange.rules_cache import market_rules
from trading.models import TradeExecution, TradeProposal
from trading.preflight import preflight_preview
from trading.selectors import trading_status
from trading.validators import CheckResult, PreflightResult, drift_against

logger = logging.getLogger(__name__)

# The chart: 48 hours of 15-minute candles.
CHART_INTERVAL = "15m"
CHART_INTERVAL_SECONDS = 15 * 60
CHART_CANDLES = 192
LIVE_STATUSES = (TradeProposal.Status.PENDING, TradeProposal.Status.APPROVED)
FINAL_EXECUTION_STATUSES = (TradeExecution.Status.SUBMITTED, TradeExecution.Status.FAILED)

# --- the arithmetic (pure) --------------------------------------------------------------------


# The drift is the price_drift rule's own measure (trading.validators.drift_against).
price_drift = drift_against


@dataclass(frozen=True)
class ExpectedFill:
    """A market order for `amount_eur` at `price`, with the taker fee: a buy's fee comes out
    of the EUR amount (fewer coins), a sell's out of the proceeds."""

    quantity: Decimal
    fee_eur: Decimal
    price: Decimal


def expected_fill(
    *, side: str, amount_eur: Decimal, price: Decimal | None, fee_rate: Decimal, decimals: int = 8
) -> ExpectedFill | None:
    if price is None or price <= 0:
        return None
    fee = amount_eur * fee_rate
    spent = amount_eur - fee if side == "buy" else amount_eur
    quantity = (spent / price).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)
    return ExpectedFill(quantity=quantity, fee_eur=fee, price=price)


def eur_at_risk(*, amount_eur: Decimal) -> Decimal:
    """No stop-loss order is ever placed, so the whole order is at risk."""
    return amount_eur


def risk_to_stop(
    *, fill: ExpectedFill | None, stop_loss: Decimal | None, fee_rate: Decimal
) -> Decimal | None:
    """What leaving at the advisor's stop-loss would cost: the move to the stop on the
    expected quantity, plus the fee in and out. None without a stop or a fill."""
    if fill is None or stop_loss is None:
        return None
    move = abs(fill.price - stop_loss) * fill.quantity
    return move + fill.fee_eur + stop_loss * fill.quantity * fee_rate


# --- parts given by the apps above trading ----------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """The owner's position in the proposal's asset from our own ledger, and after the trade."""

    asset: str
    quantity: Decimal
    average_cost_eur: Decimal | None
    value_eur: Decimal | None  # at the price now
    quantity_after: Decimal | None  # None: no price, no expected fill
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Record:
    """The advisor's scored proposals in one group: count, hit rate, mean net return."""

    label: str
    count: int
    hits: int
    hit_rate: Decimal | None
    mean_net_return: Decimal | None


@dataclass(frozen=True)
class AdvisorView:
    """What the advisor saw and said (its stored decision) and its record at one horizon."""

    advisor: str
    model: str
    prompt_version: str
    cost_eur: Decimal | None
    prompt_tokens: int | None
    completion_tokens: int | None
    market_input: dict | None  # the snapshot of this market it was given
    limits: dict | None
    stop_loss: Decimal | None
    take_profit: Decimal | None
    exit_horizon_hours: int | None
    invalidation: str
    horizon_hours: int
    records: tuple[Record, ...]


_parts: dict[str, Callable] = {}


def decision_part(name: str):
    """Registers the reader of one part: `holding(proposal, *, fill) -> Holding | None` or
    `advisor(proposal) -> AdvisorView | None`."""

    def register(reader: Callable) -> Callable:
        _parts[name] = reader
        return reader

    return register


def decision_part_read(name: str, *args, **kwargs):
    """One part on its own (a chat card shows the advisor's record without the whole
    screen); None when its app is not loaded or its read fails."""
    reader = _parts.get(name)
    if reader is None:
        return None
    try:
        return reader(*args, **kwargs)
    except ExchangeError as error:
        logger.warning("decision part %s unavailable: %s", name, error.code)
        return None


# --- the screen -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    rule: str
    label: str  # the rule in plain words: "Cooldown"
    passed: bool
    code: str | None
    text: str


@dataclass(frozen=True)
class Actions:
    """What the viewer may do now: the proposal's state and their permissions agree."""

    approve: bool = False
    reject: bool = False
    execute: bool = False
    override: bool = False


@dataclass(frozen=True)
class ExecutionView:
    id: int
    status: str
    final: bool
    exchange_order_id: str
    exchange_status: str
    average_price: Decimal | None
    filled_amount: Decimal | None
    filled_eur: Decimal | None
    fee_eur: Decimal | None
    partially_filled: bool
    error_code: str
    error_message: str


@dataclass(frozen=True)
class ProposalDecision:
    proposal: TradeProposal
    now: datetime
    live: bool  # PENDING or APPROVED and not expired
    candles: tuple[Candle, ...]  # oldest first
    chart_error: str
    price_now: Decimal | None
    price_error: str
    drift: Decimal | None  # relative; positive is against the proposal
    fill: ExpectedFill | None
    at_risk_eur: Decimal
    risk_to_stop_eur: Decimal | None
    holding: Holding | None
    advisor: AdvisorView | None
    preflight: PreflightResult
    # A PENDING proposal is previewed as if approved now; one with an execution shows what
    # preflight said when it was claimed (now its own claim would count against it).
    preflight_if_approved: bool
    verdicts: tuple[Verdict, ...]
    status: dict  # trading_status: caps used, cooldowns, LLM budget left
    execution: ExecutionView | None
    actions: Actions = field(default_factory=Actions)

    @property
    def drift_against(self) -> bool | None:
        return None if self.drift is None else self.drift > 0

    @property
    def drift_size(self) -> Decimal | None:
        return None if self.drift is None else abs(self.drift)

    @property
    def preflight_heading(self) -> str:
        if self.execution is not None:
            return "Preflight when the execution was claimed"
        return "Preflight if approved now" if self.preflight_if_approved else "Preflight now"

    @property
    def final(self) -> bool:
        """Nothing more will change by itself: no live proposal, no execution under way."""
        if self.execution is not None:
            return self.execution.final
        return not self.live


RULE_LABELS = {
    "kill_switch": "Kill switch",
    "proposal_state": "Proposal state",
    "allowlist": "Allowlist",
    "order_size": "Order size",
    "confidence": "Confidence",
    "cooldown": "Cooldown",
    "anti_flip": "Anti-flip",
    "daily_cap": "Daily cap",
    "hourly_cap": "Hourly cap",
    "market_status": "Market status",
    "balance": "Balance (shared account)",
    "price_drift": "Price drift",
}


def rule_label(rule: str) -> str:
    """A rule's name in plain words; a rule added later reads from its own name."""
    return RULE_LABELS.get(rule) or rule.replace("_", " ").capitalize()


def verdicts_of(result: PreflightResult) -> tuple[Verdict, ...]:
    return tuple(
        Verdict(
            rule=check.rule,
            label=rule_label(check.rule),
            passed=check.passed,
            code=check.code,
            text=check.detail,
        )
        for check in result.checks
    )


def preflight_of(stored: dict) -> PreflightResult:
    """A preflight result as the claim stored it (PreflightResult.as_dict)."""
    fields = ("rule", "passed", "code", "detail")
    return PreflightResult(
        checks=tuple(
            CheckResult(**{name: check.get(name) for name in fields})
            for check in stored.get("checks", [])
        )
    )


def execution_view(execution: TradeExecution | None) -> ExecutionView | None:
    if execution is None:
        return None
    return ExecutionView(
        id=execution.pk,
        status=execution.status,
        final=execution.status in FINAL_EXECUTION_STATUSES,
        exchange_order_id=execution.exchange_order_id,
        exchange_status=execution.exchange_status,
        average_price=execution.average_price,
        filled_amount=execution.filled_amount,
        filled_eur=execution.filled_eur,
        fee_eur=execution.fee_eur,
        partially_filled=execution.partially_filled,
        error_code=execution.error_code,
        error_message=execution.error_message,
    )


def proposal_execution(proposal: TradeProposal) -> TradeExecution | None:
    return TradeExecution.objects.for_user(proposal.user_id).filter(proposal=proposal).first()


def _actions(user, proposal: TradeProposal, *, live: bool, execution) -> Actions:
    status = proposal.status
    can = user.has_perm
    return Actions(
        approve=live and status == TradeProposal.Status.PENDING and can("trading.approve_proposal"),
        reject=live and execution is None and can("trading.approve_proposal"),
        execute=live
        and status == TradeProposal.Status.APPROVED
        and (execution is None or execution.status == TradeExecution.Status.CLAIMED)
        and can("trading.execute_proposal"),
        override=live and execution is None and can("trading.override_guards"),
    )


def chart_candles(market: str, *, client: ReadonlyClient) -> tuple[Candle, ...]:
    """The last 48 hours of the market, oldest first (Bitvavo sends newest first)."""
    rows = client.candles(market, interval=CHART_INTERVAL, limit=CHART_CANDLES)
    return tuple(reversed(rows))


def proposal_decision(*, user, proposal: TradeProposal) -> ProposalDecision:
    """Everything the decision screen shows about `proposal` for `user` (who is looking:
    their permissions decide the actions); the facts are those of the proposal's owner.
    Reads only: the exchange with the read-only client (public data), nothing is written."""
    # The execution first, then the proposal as it is now: both end in one transaction, so
    # a final execution is never shown beside an older proposal state.
    execution = proposal_execution(proposal)
    proposal = TradeProposal.objects.for_user(proposal.user_id).get(pk=proposal.pk)
    now = timezone.now()
    client = ReadonlyClient()
    candles, chart_error = (), ""
    try:
        candles = chart_candles(proposal.market, client=client)
    except ExchangeError as error:
        chart_error = f"{error.code}: {error.message}"
    price_now, price_error = None, ""
    try:
        price_now = client.ticker_price(proposal.market)
    except ExchangeError as error:
        price_error = f"{error.code}: {error.message}"
    rules = market_rules(proposal.market)
    fee_rate = settings.BITVAVO_TAKER_FEE
    fill = expected_fill(
        side=proposal.side,
        amount_eur=proposal.amount_eur,
        price=price_now,
        fee_rate=fee_rate,
        decimals=rules.quantity_decimals if rules else 8,
    )
    advisor = decision_part_read("advisor", proposal)
    live = proposal.status in LIVE_STATUSES and proposal.expires_at > now
    if_approved = proposal.status == TradeProposal.Status.PENDING
    if execution is not None and execution.preflight_result:
        preflight = preflight_of(execution.preflight_result)
    else:
        preflight = preflight_preview(proposal=proposal, as_approved=if_approved)
    return ProposalDecision(
        proposal=proposal,
        now=now,
        live=live,
        candles=candles,
        chart_error=chart_error,
        price_now=price_now,
        price_error=price_error,
        drift=price_drift(
            side=proposal.side, at_proposal=proposal.price_at_proposal, now=price_now
        ),
        fill=fill,
        at_risk_eur=eur_at_risk(amount_eur=proposal.amount_eur),
        risk_to_stop_eur=risk_to_stop(
            fill=fill, stop_loss=advisor.stop_loss if advisor else None, fee_rate=fee_rate
        ),
        holding=decision_part_read("holding", proposal, fill=fill),
        advisor=advisor,
        preflight=preflight,
        preflight_if_approved=if_approved,
        verdicts=verdicts_of(preflight),
        status=trading_status(user=proposal.user),
        execution=execution_view(execution),
        actions=_actions(user, proposal, live=live, execution=execution),
    )


def chart_data(decision: ProposalDecision) -> dict:
    """The chart's series as lightweight-charts reads them: times in UTC seconds, prices as
    numbers (display only), the proposal's moment snapped to its candle."""
    proposal = decision.proposal
    created = int(proposal.created_at.timestamp())
    return {
        "candles": [
            {
                "time": candle.timestamp_ms // 1000,
                "open": float(candle.open),
                "high": float(candle.high),
                "low": float(candle.low),
                "close": float(candle.close),
            }
            for candle in decision.candles
        ],
        "proposal": {
            "time": created - created % CHART_INTERVAL_SECONDS,
            "price": None
            if proposal.price_at_proposal is None
            else float(proposal.price_at_proposal),
            "side": proposal.side,
            "label": f"#{proposal.pk} {proposal.side}",
        },
        "price_now": None if decision.price_now is None else float(decision.price_now),
    }


def decision_state(*, proposal: TradeProposal) -> dict:
    """The small state the page polls until it is final: the proposal's status and its
    execution's, read now, with the fill price once the order is final."""
    # The execution first: its final state commits with the proposal's, so a proposal read
    # after a final execution is never older than it.
    execution = execution_view(proposal_execution(proposal))
    proposal = TradeProposal.objects.for_user(proposal.user_id).get(pk=proposal.pk)
    live = proposal.status in LIVE_STATUSES and proposal.expires_at > timezone.now()
    return {
        "proposal_status": proposal.status,
        "execution": None
        if execution is None
        else {
            "id": execution.id,
            "status": execution.status,
            "exchange_order_id": execution.exchange_order_id,
            "exchange_status": execution.exchange_status,
            "average_price": price_text(execution.average_price),
            "filled_eur": eur_text(execution.filled_eur),
            "fee_eur": eur_text(execution.fee_eur),
            "error_code": execution.error_code,
        },
        "final": execution.final if execution is not None else not live,
    }
