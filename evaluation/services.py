"""Writes of the evaluation app: the advisor's decisions, and proposal scoring (scoring.py)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from evaluation.models import AdvisorDecision
from scheduler.advisors import PROMPT_VERSION

MILLION = Decimal(1_000_000)


def llm_cost_eur(*, model: str, prompt_tokens: int | None, completion_tokens: int | None):
    """EUR for one call from LLM_PRICES_EUR_PER_MTOK; None for a model without a price."""
    prices = settings.LLM_PRICES_EUR_PER_MTOK.get(model)
    if prices is None:
        return None
    prompt_price, completion_price = prices
    cost = (prompt_tokens or 0) * prompt_price + (completion_tokens or 0) * completion_price
    return (cost / MILLION).quantize(Decimal("1e-8"))


def advisor_decision_record(
    *,
    user_id: int,
    scan_job_id: int | None,
    advisor,
    prompt_input: dict,
    reply=None,
    decision: str,
    reason: str = "",
    proposal=None,
    advice=None,
    input_hash: str = "",
) -> AdvisorDecision:
    """One scan's decision as it happened: what the advisor was given, what it answered and
    what came of it. Called inside the proposal's transaction for a proposal."""
    prompt_tokens = reply.prompt_tokens if reply else None
    completion_tokens = reply.completion_tokens if reply else None
    if advisor.name == "offline":
        cost = Decimal(0)
    else:
        cost = llm_cost_eur(
            model=advisor.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    return AdvisorDecision.objects.create(
        user_id=user_id,
        scan_job_id=scan_job_id,
        advisor=advisor.name,
        model=advisor.model,
        prompt_version=PROMPT_VERSION,
        input=prompt_input,
        input_hash=input_hash,
        raw_reply=_text(reply.text) if reply else "",
        decision=decision,
        reason=_text(reason),
        proposal=proposal,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_eur=cost,
        stop_loss=getattr(advice, "stop_loss", None),
        take_profit=getattr(advice, "take_profit", None),
        exit_horizon_hours=getattr(advice, "exit_horizon_hours", None),
        invalidation=_text(getattr(advice, "invalidation", "")),
    )


def _text(value: str | None) -> str:
    # PostgreSQL text cannot hold NUL; a reply is stored as received otherwise.
    return (value or "").replace("\x00", "\\x00")
