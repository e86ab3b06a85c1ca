"""One scan: read-only market data -> advisor (within the LLM budget) -> PENDING proposal.

It runs only while its lease is held and releases the lease with the next run time when it
ends, whatever happens. Advisor output is untrusted: anything that does not validate is
rejected with a reason and logged, never stored as a proposal; the call still counts.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from budget.errors import BudgetExhausted
from budget.services import budget_admit, budget_close
from exchange.readonly import ReadonlyClient, price_change, volatility
from scheduler.advisors import advisor_for_environment
from scheduler.models import ScanJob
from scheduler.services import scan_job_extend_lease, scan_job_holds_lease, scan_job_release
from trading.errors import ProposalInvalid
from trading.selectors import policy_get_for_user
from trading.services import proposal_create

logger = logging.getLogger(__name__)

CANDLE_INTERVAL, CANDLE_COUNT = "1h", 24
BUDGET_RETRY = timedelta(minutes=5)


@dataclass(frozen=True)
class ScanOutcome:
    status: str  # proposed, no_trade, rejected, budget_exhausted, lease_lost, failed
    detail: str = ""
    proposal_id: int | None = None

    def __str__(self) -> str:
        tail = f" proposal #{self.proposal_id}" if self.proposal_id else ""
        return f"{self.status}{tail}{': ' + self.detail if self.detail else ''}"


def market_snapshot_build(*, client: ReadonlyClient, markets: list[str], policy) -> dict:
    """What the advisor sees: price, 24 h change and volatility per market, and the limits."""
    rows = []
    for market in markets:
        candles = client.candles(market, interval=CANDLE_INTERVAL, limit=CANDLE_COUNT)
        rows.append(
            {
                "market": market,
                "price": str(client.ticker_price(market)),
                "change": str(round(price_change(candles), 6)),
                "volatility": str(round(volatility(candles), 6)),
            }
        )
    return {
        "window": f"{CANDLE_COUNT}x{CANDLE_INTERVAL}",
        "markets": rows,
        "limits": {
            "min_order_eur": str(policy.min_order_eur),
            "max_order_eur": str(policy.max_order_eur),
        },
    }


def _proposal_fields(output: object, markets: list[str]) -> dict | None:
    """The proposal the advisor asked for, None for "no trade"; ProposalInvalid otherwise."""
    if not isinstance(output, dict):
        raise ProposalInvalid("The advisor's answer is not a JSON object.", extra={"field": "*"})
    if output.get("trade") is False:
        return None
    if output.get("market") not in markets:
        raise ProposalInvalid(
            "The advisor proposed a market this job does not scan.", extra={"field": "market"}
        )
    return {name: output.get(name) for name in ("market", "side", "amount_eur", "confidence")} | {
        "rationale": output.get("rationale", "")
    }


def scan_job_run(*, job_id: int, lock_token: uuid.UUID, advisor=None) -> ScanOutcome:
    if not scan_job_holds_lease(job_id=job_id, lock_token=lock_token):
        return ScanOutcome("lease_lost", "Another worker holds this job now.")
    job = ScanJob.objects.select_related("user").get(pk=job_id)
    ScanJob.objects.filter(pk=job_id, lock_token=lock_token).update(last_started_at=timezone.now())
    try:
        outcome = _scan(job, lock_token, advisor or advisor_for_environment())
    except Exception as error:
        logger.exception("scan job %s failed", job_id)
        scan_job_release(job_id=job_id, lock_token=lock_token, outcome="failed", error=str(error))
        return ScanOutcome("failed", f"{error.__class__.__name__}: {error}")
    if outcome.status == "budget_exhausted":
        scan_job_release(
            job_id=job_id,
            lock_token=lock_token,
            outcome="deferred",
            error=outcome.detail,
            retry_in=BUDGET_RETRY,
        )
    elif outcome.status != "lease_lost":
        scan_job_release(
            job_id=job_id,
            lock_token=lock_token,
            outcome="succeeded",
            error=outcome.detail if outcome.status == "rejected" else "",
        )
    return outcome


def _scan(job: ScanJob, lock_token: uuid.UUID, advisor) -> ScanOutcome:
    policy = policy_get_for_user(user=job.user)
    snapshot = market_snapshot_build(client=ReadonlyClient(), markets=job.markets, policy=policy)
    try:
        usage = budget_admit(
            user_id=job.user_id,
            daily_limit=policy.gpt_daily_limit,
            hourly_limit=policy.gpt_hourly_limit,
            model=advisor.model,
            reason="scan",
            tokens_estimate=len(json.dumps(snapshot)) // 4,
            scan_job_id=job.pk,
        )
    except BudgetExhausted as refusal:
        return ScanOutcome("budget_exhausted", refusal.code)
    # The advisor call may be slow: make sure the lease outlives it.
    if not scan_job_extend_lease(job_id=job.pk, lock_token=lock_token):
        budget_close(
            usage_id=usage.pk,
            status="FAILED",
            prompt_tokens=None,
            completion_tokens=None,
            error="LEASE_LOST",
        )
        return ScanOutcome("lease_lost", "The lease expired before the advisor was asked.")
    try:
        advice = advisor.advise(snapshot)
    except Exception as error:
        budget_close(
            usage_id=usage.pk,
            status="FAILED",
            prompt_tokens=None,
            completion_tokens=None,
            error=f"ADVISOR_ERROR: {error}",
        )
        raise
    tokens = {"prompt_tokens": advice.prompt_tokens, "completion_tokens": advice.completion_tokens}
    try:
        fields = _proposal_fields(advice.output, job.markets)
        if fields is None:
            budget_close(usage_id=usage.pk, status="SUCCEEDED", **tokens)
            return ScanOutcome("no_trade")
        proposal = proposal_create(user=job.user, source="scan", scan_job=job, **fields)
    except ProposalInvalid as invalid:
        reason = f"INVALID_OUTPUT ({invalid.extra.get('field')}): {invalid.message}"
        logger.warning("scan job %s: advisor output rejected: %s", job.pk, reason)
        budget_close(usage_id=usage.pk, status="FAILED", error=reason, **tokens)
        return ScanOutcome("rejected", reason)
    budget_close(usage_id=usage.pk, status="SUCCEEDED", **tokens)
    return ScanOutcome("proposed", proposal_id=proposal.pk)
