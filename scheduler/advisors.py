"""Advisors: given a market snapshot and the user's limits, one proposal or "no trade".

Both advisors answer with the same JSON text, and `advice_parse` is the only way from that
text to a proposal, so the offline rules and the LLM are held to the same checks.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

import openai
from django.conf import settings

from scheduler.errors import AdvisorCallFailed, AdvisorOutputInvalid
from trading.errors import ProposalInvalid
from trading.selectors import Holdings
from trading.services import proposal_validate_fields
from trading.validators import asset_of

PROPOSE = "propose"
NO_TRADE = "no_trade"
MAX_COMPLETION_TOKENS = 500
# Stored with every decision; bumped whenever what the advisor is shown or asked changes.
# v2: several timeframes with indicators, the advisor's own scored record, an exit plan.
# v3: the user's holdings per market and the allocation left for buys.
PROMPT_VERSION = "v3"
MAX_EXIT_HORIZON_HOURS = 30 * 24
CENT = Decimal("0.01")

# Strict structured output: every key is present, the ones a "no trade" does not need are null.
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "decision": {"type": "string", "enum": [PROPOSE, NO_TRADE]},
        "market": {"type": ["string", "null"], "description": "One of the snapshot's markets."},
        "side": {"type": ["string", "null"], "enum": ["buy", "sell", None]},
        "amount_eur": {
            "type": ["string", "null"],
            "description": 'Euros with at most 2 decimals, e.g. "25.00".',
        },
        "confidence": {"type": "integer", "enum": [0, 25, 50, 75, 100]},
        "rationale": {"type": "string", "description": "Why, in at most 500 characters."},
        "exit_plan": {
            "type": ["object", "null"],
            "description": "For a proposal: where you would take the loss or the profit.",
            "properties": {
                "stop_loss": {"type": ["string", "null"], "description": "A price."},
                "take_profit": {"type": ["string", "null"], "description": "A price."},
                "horizon_hours": {"type": ["integer", "null"]},
            },
            "required": ["stop_loss", "take_profit", "horizon_hours"],
            "additionalProperties": False,
        },
        "invalidation": {
            "type": ["string", "null"],
            "description": "What would show the idea wrong, in a sentence.",
        },
    },
    "required": [
        "decision",
        "market",
        "side",
        "amount_eur",
        "confidence",
        "rationale",
        "exit_plan",
        "invalidation",
    ],
    "additionalProperties": False,
}

RESPONSE_SCHEMA = {"name": "trade_advice", "strict": True, "schema": OUTPUT_SCHEMA}

SYSTEM_PROMPT = (
    "You review crypto markets on Bitvavo for one user and may propose at most one spot "
    "trade. You get a market snapshot (relative values: 0.012 means +1.2%) with 1 h, 4 h "
    "and 1 d candles summarised by indicators, the user's limits, and your own last scored "
    "proposals on these markets (net_return after fees per horizon in hours; hit means it "
    'earned money). Answer "no_trade" unless one of the given markets shows a clear edge. '
    'Otherwise "propose" one trade in one of the given markets, with amount_eur between '
    "min_order_eur and max_order_eur, an exit plan (stop-loss and take-profit prices, a "
    "horizon in hours), what would invalidate the idea, and a confidence that your record "
    "would support: most trades lose to doing nothing after fees. The user trades only their "
    "own share: limits.holdings says what they hold of each market's asset (a sell may be "
    "for at most sellable_eur) and limits.allocation_left_eur what buys may still spend; "
    "never propose more than either. A human reviews every proposal before anything is "
    "executed."
)


@dataclass(frozen=True)
class AdvisorReply:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True)
class Advice:
    market: str
    side: str
    amount_eur: Decimal
    confidence: int
    rationale: str
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    exit_horizon_hours: int | None = None
    invalidation: str = ""


def _as_json(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def advisor_limits(policy, *, holdings: Holdings | None = None, snapshot: dict | None = None):
    """The user's limits as the advisor is given them; with `holdings`, what the user holds
    of each snapshot market's asset (valued at the snapshot's last price) and what their
    allocation leaves for buys, so no sell of what they do not hold is proposed."""
    limits = {
        "min_order_eur": policy.min_order_eur,
        "max_order_eur": policy.max_order_eur,
        "min_confidence": policy.min_confidence,
    }
    if holdings is None:
        return limits
    left = holdings.allocation_left_eur(policy.allocation_eur)
    limits["allocation_left_eur"] = left.quantize(CENT, ROUND_DOWN)
    limits["holdings"] = {}
    for market, data in (snapshot or {}).items():
        asset, last = asset_of(market), data.get("last")
        quantity, selling = holdings.quantity(asset), holdings.open_eur(side="sell", asset=asset)
        value = None if last is None else (quantity * last).quantize(CENT, ROUND_DOWN)
        limits["holdings"][market] = {
            "asset": asset,
            "quantity": quantity.normalize(),
            "value_eur": value,
            "open_sells_eur": selling,
            "sellable_eur": None if value is None else max(Decimal("0"), value - selling),
        }
    return limits


def advice_allowed(*, market: str, side: str, amount_eur: Decimal, limits: dict) -> bool:
    """Whether the user's holdings and allocation (when the limits carry them) leave room
    for this trade: preflight would refuse it otherwise."""
    if side == "sell" and "holdings" in limits:
        sellable = (limits["holdings"].get(market) or {}).get("sellable_eur")
        return sellable is not None and Decimal(str(sellable)) >= amount_eur
    if side == "buy" and "allocation_left_eur" in limits:
        return Decimal(str(limits["allocation_left_eur"])) >= amount_eur
    return True


def advisor_input(*, snapshot: dict, limits: dict, track_record: list) -> dict:
    """What an advisor is given, exactly as the LLM reads it and as the decision stores it."""
    return json.loads(
        _as_json({"markets": snapshot, "limits": limits, "track_record": list(track_record)})
    )


def _rounded(value, digits: int):
    """Numbers to `digits` significant digits, recursively, so noise below that is ignored."""
    if isinstance(value, dict):
        return {key: _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item, digits) for item in value]
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or number == 0:
        return str(number)
    return str(number.quantize(Decimal(1).scaleb(number.adjusted() - digits + 1)).normalize())


def advisor_input_hash(*, snapshot: dict, limits: dict, model: str, digits: int) -> str:
    """SHA-256 of what would make the advisor answer differently: the snapshot rounded to
    `digits` significant digits, the limits, the model and the prompt version. The track
    record is left out: it moves only as outcomes are scored. Empty when `digits` is 0."""
    if digits <= 0:
        return ""
    material = {
        "markets": _rounded(snapshot, digits),
        "limits": _rounded(limits, digits),
        "model": model,
        "prompt_version": PROMPT_VERSION,
    }
    return hashlib.sha256(_as_json(material).encode()).hexdigest()


def advice_parse(*, text: str | None, markets: list[str]) -> Advice | None:
    """The advisor's answer as a proposal to store, or None for "no trade".

    Raises AdvisorOutputInvalid with `extra["field"]` naming what was wrong.
    """

    def invalid(field: str, message: str) -> AdvisorOutputInvalid:
        return AdvisorOutputInvalid(message, extra={"field": field})

    try:
        # Decimal, never float, for every number the model writes.
        data = json.loads(text or "", parse_float=Decimal)
    except (ValueError, RecursionError):
        raise invalid("output", "The output is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("output", "The output is not a JSON object.")
    decision = data.get("decision")
    if decision == NO_TRADE:
        return None
    if decision != PROPOSE:
        raise invalid("decision", f'The decision must be "{PROPOSE}" or "{NO_TRADE}".')
    try:
        market, side, amount, confidence, rationale = proposal_validate_fields(
            market=data.get("market"),
            side=data.get("side"),
            amount_eur=data.get("amount_eur"),
            confidence=data.get("confidence"),
            rationale=data.get("rationale"),
        )
    except ProposalInvalid as error:
        raise invalid(error.extra["field"], error.message) from None
    if market not in markets:
        raise invalid("market", f"{market} is not one of the scanned markets.")
    stop_loss, take_profit, horizon = _exit_plan_parse(data.get("exit_plan"), side, invalid)
    invalidation = data.get("invalidation") or ""
    if not isinstance(invalidation, str) or len(invalidation) > 1000 or "\x00" in invalidation:
        raise invalid("invalidation", "The invalidation must be text of at most 1000 characters.")
    return Advice(
        market, side, amount, confidence, rationale, stop_loss, take_profit, horizon, invalidation
    )


def _exit_plan_parse(plan, side: str, invalid) -> tuple[Decimal | None, Decimal | None, int | None]:
    """The optional exit plan: positive prices on the right sides of each other, a horizon of
    1 hour to MAX_EXIT_HORIZON_HOURS. Absent or null is no plan."""
    if plan is None:
        return None, None, None
    if not isinstance(plan, dict):
        raise invalid("exit_plan", "The exit plan must be an object or null.")
    prices = []
    for name in ("stop_loss", "take_profit"):
        value = plan.get(name)
        if value is None:
            prices.append(None)
            continue
        try:
            price = Decimal(str(value)) if not isinstance(value, bool | float) else None
        except ArithmeticError:
            price = None
        if price is None or not price.is_finite() or price <= 0 or price > Decimal("1e15"):
            raise invalid(f"exit_plan.{name}", f"The {name} must be a positive price.")
        prices.append(price.quantize(Decimal("1e-12")).normalize())
    stop_loss, take_profit = prices
    if stop_loss is not None and take_profit is not None:
        # A buy's stop is below its target; a sell's above.
        if (stop_loss >= take_profit) if side == "buy" else (stop_loss <= take_profit):
            raise invalid("exit_plan.stop_loss", f"The stop-loss is on the wrong side of a {side}.")
    horizon = plan.get("horizon_hours")
    if horizon is not None and (
        isinstance(horizon, bool)
        or not isinstance(horizon, int)
        or not 1 <= horizon <= MAX_EXIT_HORIZON_HOURS
    ):
        raise invalid(
            "exit_plan.horizon_hours",
            f"The horizon must be a whole number of hours from 1 to {MAX_EXIT_HORIZON_HOURS}.",
        )
    return stop_loss, take_profit, horizon


class LlmAdvisor:
    """The LLM through the openai package, with SDK retries off: a retry would be an
    uncounted call. A retry, if any, is a new admission through the budget."""

    name = "llm"

    def __init__(self, *, api_key: str, base_url: str | None, model: str, timeout: float):
        self.model = model
        self.client = openai.OpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
        )

    @staticmethod
    def _prompt(snapshot: dict, limits: dict, track_record: list) -> str:
        return _as_json(advisor_input(snapshot=snapshot, limits=limits, track_record=track_record))

    def tokens_estimate(self, *, snapshot: dict, limits: dict, track_record: list = ()) -> int:
        # About four characters a token, plus the most the answer may use.
        prompt = SYSTEM_PROMPT + self._prompt(snapshot, limits, list(track_record))
        return len(prompt) // 4 + MAX_COMPLETION_TOKENS

    def advise(self, *, snapshot: dict, limits: dict, track_record: list = ()) -> AdvisorReply:
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {
                        "role": "user",
                        "content": self._prompt(snapshot, limits, list(track_record)),
                    },
                ],
                response_format={"type": "json_schema", "json_schema": RESPONSE_SCHEMA},
                max_completion_tokens=MAX_COMPLETION_TOKENS,
            )
        except openai.APITimeoutError as error:
            raise AdvisorCallFailed(str(error), code="LLM_TIMEOUT") from error
        except openai.APIConnectionError as error:
            raise AdvisorCallFailed(str(error), code="LLM_UNREACHABLE") from error
        except openai.APIStatusError as error:
            raise AdvisorCallFailed(str(error), code=f"LLM_HTTP_{error.status_code}") from error
        except (openai.APIError, ValueError) as error:
            # ValueError: a body that is not JSON (a proxy's HTML page) escapes the SDK as is.
            raise AdvisorCallFailed(str(error), code="LLM_BAD_RESPONSE") from error
        usage = response.usage
        tokens = (usage.prompt_tokens, usage.completion_tokens) if usage else (None, None)
        message = response.choices[0].message if response.choices else None
        if message is not None and getattr(message, "refusal", None):
            # A refusal is an answer, not a proposal: it reaches advice_parse as invalid JSON.
            return AdvisorReply(f"refusal: {message.refusal}", *tokens)
        return AdvisorReply(message.content if message else None, *tokens)


class OfflineAdvisor:
    """Deterministic momentum rules, so the product works without an LLM account.

    The market that moved most over 24 hours relative to its hourly noise, if it moved at
    least MIN_MOVE and is not wilder than MAX_VOLATILITY: buy on a rise, sell on a fall, the
    user's minimum amount, more confidence for a steadier move. A sell only of what the user
    holds, a buy only within the allocation left (when the limits say them).
    """

    name = "offline"
    model = "offline-momentum-v1"
    MIN_MOVE = Decimal("0.01")
    MAX_VOLATILITY = Decimal("0.05")
    # Noise floor: a dead-flat market would otherwise score infinitely well.
    MIN_VOLATILITY = Decimal("0.0005")

    def tokens_estimate(self, *, snapshot: dict, limits: dict, track_record: list = ()) -> int:
        return 0

    def advise(self, *, snapshot: dict, limits: dict, track_record: list = ()) -> AdvisorReply:
        # The rules ignore the record: they are the fixed baseline the LLM is measured against.
        return AdvisorReply(_as_json(self.decide(snapshot=snapshot, limits=limits)), 0, 0)

    def decide(self, *, snapshot: dict, limits: dict) -> dict:
        best = None
        amount = Decimal(str(limits["min_order_eur"]))
        for market, data in sorted(snapshot.items()):
            move, noise = data["change_24h"], data["volatility_1h"]
            if abs(move) < self.MIN_MOVE or noise > self.MAX_VOLATILITY:
                continue
            side = "buy" if move > 0 else "sell"
            if not advice_allowed(market=market, side=side, amount_eur=amount, limits=limits):
                continue  # not the user's to sell, or no allocation left to buy
            score = abs(move) / max(noise, self.MIN_VOLATILITY)
            if best is None or score > best[0]:
                best = (score, market, move, noise)
        if best is None:
            return {
                "decision": NO_TRADE,
                "market": None,
                "side": None,
                "amount_eur": None,
                "confidence": 0,
                "rationale": f"No market moved {self.MIN_MOVE:.0%} in 24 hours with calm "
                f"enough hourly swings (at most {self.MAX_VOLATILITY:.0%}).",
                "exit_plan": None,
                "invalidation": None,
            }
        score, market, move, noise = best
        return {
            "decision": PROPOSE,
            "market": market,
            "side": "buy" if move > 0 else "sell",
            "amount_eur": str(limits["min_order_eur"]),
            "confidence": 75 if score >= 10 else 50 if score >= 5 else 25,
            "rationale": f"{market} moved {move:+.2%} in 24 hours with hourly volatility "
            f"{noise:.2%} (momentum score {score:.1f}).",
            "exit_plan": None,
            "invalidation": None,
        }


def advisor_get() -> LlmAdvisor | OfflineAdvisor:
    """The LLM when OPENAI_API_KEY is set in this process's environment, else offline rules."""
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        return OfflineAdvisor()
    return LlmAdvisor(
        api_key=api_key,
        base_url=settings.OPENAI_BASE_URL or None,
        model=settings.OPENAI_MODEL,
        timeout=settings.OPENAI_TIMEOUT,
    )
