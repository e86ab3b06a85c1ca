"""Fewer, better proposals: a scan whose advice is the same market and side as a proposal of
the user still pending stores nothing new, and its advisor decision says why. Two jobs of one
user on the same markets (the demo's case) end with one pending proposal. The advisor is
not shown a market in cooldown or at a cap, and is told why."""

import json

import pytest
from django.utils import timezone

from evaluation.models import AdvisorDecision
from scheduler.services import ScanOutcome
from tests.factories import ScanJobFactory, TradeExecutionFactory, TradeProposalFactory
from tests.scheduler.conftest import proposal_reply
from tests.scheduler.test_scan_pipeline import MARKETS, run, scan_job
from trading.models import TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db


def test_the_same_market_and_side_pending_is_not_proposed_again(market_data, llm, settings):
    # The advisor must be asked again: an unchanged market would skip it (UNCHANGED).
    settings.SCAN_UNCHANGED_DIGITS = 0
    llm.default = proposal_reply(market="ETH-EUR", side="buy", amount_eur="30.00", confidence=75)
    first_job = scan_job()
    second_job = ScanJobFactory(user=first_job.user, markets=MARKETS, interval_minutes=15)

    assert run(first_job).status == ScanOutcome.PROPOSED
    outcome = run(second_job)

    pending = TradeProposal.objects.get()
    assert outcome.status == ScanOutcome.DUPLICATE and outcome.proposal_id is None
    assert outcome.detail.startswith(f"DUPLICATE_PROPOSAL: proposal #{pending.pk} ")
    decision = AdvisorDecision.objects.get(scan_job=second_job)
    assert (decision.decision, decision.proposal) == ("rejected", None)
    assert decision.reason == outcome.detail
    assert not run(second_job).failed  # not the job's failure: it runs on as usual


def test_another_side_or_a_decided_one_is_no_duplicate(market_data, llm):
    llm.default = proposal_reply(market="ETH-EUR", side="buy", amount_eur="30.00", confidence=75)
    job = scan_job()
    TradeProposalFactory(user=job.user, market="ETH-EUR", side="sell")
    TradeProposalFactory(user=job.user, market="ETH-EUR", side="buy", approved=True)

    assert run(job).status == ScanOutcome.PROPOSED
    assert TradeProposal.objects.filter(status="PENDING", side="buy").count() == 1


def recent_trade(user, market: str):
    TradeExecutionFactory(
        proposal__user=user,
        proposal__market=market,
        status=TradeExecution.Status.SUBMITTED,
        exchange_order_id="order-1",
        submitting_at=timezone.now(),
    )


def test_the_advisor_is_told_of_a_market_in_cooldown_and_not_shown_it(market_data, llm):
    llm.default = proposal_reply(market="ETH-EUR", side="buy", amount_eur="30.00", confidence=75)
    job = scan_job()
    recent_trade(job.user, "BTC-EUR")

    assert run(job).status == ScanOutcome.PROPOSED
    prompt = json.loads(llm.requests[0]["messages"][1]["content"])
    assert set(prompt["markets"]) == {"ETH-EUR"}
    (reason,) = prompt["limits"]["markets_not_tradable_now"].values()
    assert list(prompt["limits"]["markets_not_tradable_now"]) == ["BTC-EUR"]
    assert reason.startswith("COOLDOWN_ACTIVE until ")


def test_at_a_cap_no_market_is_shown_and_no_call_is_spent(market_data, llm):
    job = scan_job(max_trades_per_hour=1)
    recent_trade(job.user, "SOL-EUR")

    outcome = run(job)
    assert (outcome.status, outcome.detail) == ("NO_MARKETS", "SCAN_NO_MARKET_TRADABLE_NOW")
    assert llm.calls == 0
