"""Every scan that reaches the advisor records its decision in full: the exact input, the
raw reply, what came of it, tokens and cost; every proposal stores the price it was made at.
Offline rules and the LLM (the openai package against the local test server), on PostgreSQL
with the simulator over HTTP."""

import json
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from evaluation.models import AdvisorDecision
from evaluation.scoring import minute_of
from scheduler.advisors import PROMPT_VERSION
from scheduler.services import scan_job_claim, scan_job_run
from tests.api.test_proposals_api import client_for
from tests.factories import (
    AdvisorDecisionFactory,
    PolicyFactory,
    ProposalOutcomeFactory,
    ScanJobFactory,
    TradeProposalFactory,
)
from tests.scheduler.conftest import proposal_reply
from tests.scheduler.llm_server import Reply
from trading.models import TradeProposal

pytestmark = pytest.mark.django_db

MARKETS = ["BTC-EUR", "ETH-EUR"]
EXIT_PLAN = {"stop_loss": "2900", "take_profit": "3300", "horizon_hours": 24}


def run_scan():
    policy = PolicyFactory()
    job = ScanJobFactory(user=policy.user, markets=MARKETS)
    outcome = scan_job_run(job_id=job.pk, lock_token=scan_job_claim(job_id=job.pk, owner="t"))
    return job, outcome


def test_an_offline_proposal_records_its_input_and_the_price_it_was_made_at(market_data, offline):
    job, outcome = run_scan()

    assert outcome.status == "PROPOSED"
    decision = AdvisorDecision.objects.get()
    proposal = TradeProposal.objects.get()
    assert (decision.user, decision.scan_job, decision.proposal) == (job.user, job, proposal)
    assert (decision.advisor, decision.model, decision.decision) == (
        "offline",
        "offline-momentum-v1",
        "propose",
    )
    assert decision.prompt_version == PROMPT_VERSION == "v3"
    assert (decision.prompt_tokens, decision.completion_tokens, decision.cost_eur) == (0, 0, 0)
    assert json.loads(decision.raw_reply)["market"] == proposal.market
    markets = decision.input["markets"]
    assert set(markets) == set(MARKETS)
    assert set(markets["BTC-EUR"]["timeframes"]) == {"1h", "4h", "1d"}
    assert decision.input["limits"]["min_order_eur"] == "10.00"
    assert decision.input["track_record"] == []
    # The proposal's price is the snapshot's last price: what the advisor saw.
    assert proposal.price_at_proposal == Decimal(markets[proposal.market]["last"])


def test_an_llm_proposal_records_tokens_cost_and_its_exit_plan(market_data, llm, settings):
    settings.LLM_PRICES_EUR_PER_MTOK = {"test-model": (Decimal("1.50"), Decimal("6.00"))}
    llm.default = proposal_reply(
        market="ETH-EUR", exit_plan=EXIT_PLAN, invalidation="A close below 2900."
    )

    _, outcome = run_scan()

    assert outcome.status == "PROPOSED"
    decision = AdvisorDecision.objects.get()
    assert decision.proposal == TradeProposal.objects.get()
    assert (decision.advisor, decision.model) == ("llm", "test-model")
    assert (decision.prompt_tokens, decision.completion_tokens) == (321, 45)
    # (321 × 1.50 + 45 × 6.00) / 1 000 000
    assert decision.cost_eur == Decimal("0.00075150")
    assert (decision.stop_loss, decision.take_profit, decision.exit_horizon_hours) == (
        Decimal("2900"),
        Decimal("3300"),
        24,
    )
    assert decision.invalidation == "A close below 2900."
    request = llm.requests[0]
    assert json.loads(request["messages"][1]["content"]) == decision.input
    schema = request["response_format"]["json_schema"]["schema"]
    assert {"exit_plan", "invalidation"} <= set(schema["required"])


def test_no_trade_and_rejected_replies_are_recorded_with_their_reason(market_data, llm):
    llm.script(
        Reply(content=json.dumps({"decision": "no_trade", "rationale": "flat"})),
        proposal_reply(confidence=30),
        proposal_reply(side="buy", exit_plan={**EXIT_PLAN, "stop_loss": "3400"}),
        Reply(status=500),
    )
    outcomes = [run_scan()[1].status for _ in range(4)]

    assert outcomes == ["NO_TRADE", "OUTPUT_REJECTED", "OUTPUT_REJECTED", "FAILED"]
    decisions = list(AdvisorDecision.objects.order_by("pk"))
    assert [d.decision for d in decisions] == ["no_trade", "rejected", "rejected", "rejected"]
    assert decisions[0].raw_reply == '{"decision": "no_trade", "rationale": "flat"}'
    assert decisions[1].reason.startswith("ADVISOR_OUTPUT_INVALID: confidence:")
    assert "exit_plan.stop_loss" in decisions[2].reason
    assert decisions[3].reason.startswith("LLM_HTTP_500") and decisions[3].raw_reply == ""
    assert all(d.proposal is None for d in decisions)
    assert not TradeProposal.objects.exists()


def test_a_model_without_a_price_has_an_unknown_cost(market_data, llm, settings):
    settings.LLM_PRICES_EUR_PER_MTOK = {}
    run_scan()
    assert AdvisorDecision.objects.get().cost_eur is None


def test_the_prompt_carries_the_advisors_own_scored_record_on_these_markets(market_data, llm):
    policy = PolicyFactory()
    job = ScanJobFactory(user=policy.user, markets=MARKETS)
    mine = TradeProposalFactory(user=policy.user, market="BTC-EUR", side="sell", confidence=50)
    AdvisorDecisionFactory(user=policy.user, proposal=mine, model="test-model", decision="propose")
    ProposalOutcomeFactory(proposal=mine, horizon_hours=1, net_return=Decimal("-0.012"), hit=False)
    ProposalOutcomeFactory(proposal=mine, horizon_hours=24, net_return=Decimal("0.0153"))
    # Another model's, another market's, another user's: not this advisor's record here.
    for other in (
        TradeProposalFactory(user=policy.user, market="BTC-EUR"),
        TradeProposalFactory(user=policy.user, market="SOL-EUR"),
        TradeProposalFactory(market="BTC-EUR"),
    ):
        model = "other-model" if other.market == "BTC-EUR" and other.user == policy.user else None
        AdvisorDecisionFactory(
            user=other.user, proposal=other, model=model or "test-model", decision="propose"
        )
        ProposalOutcomeFactory(proposal=other)

    scan_job_run(job_id=job.pk, lock_token=scan_job_claim(job_id=job.pk, owner="t"))

    prompt = json.loads(llm.requests[0]["messages"][1]["content"])
    (entry,) = prompt["track_record"]
    assert entry["market"] == "BTC-EUR" and entry["side"] == "sell"
    assert entry["confidence"] == 50 and entry["human"] == "undecided"
    assert entry["net_return"] == {"1": "-0.0120", "24": "0.0153"}


def test_the_record_is_cut_to_its_token_cap(market_data, llm, settings):
    settings.ADVISOR_TRACK_RECORD_MAX_TOKENS = 100  # about 400 characters: a few entries
    policy = PolicyFactory()
    for _ in range(10):
        mine = TradeProposalFactory(user=policy.user, market="ETH-EUR")
        AdvisorDecisionFactory(user=policy.user, proposal=mine, model="test-model")
        ProposalOutcomeFactory(proposal=mine)
    job = ScanJobFactory(user=policy.user, markets=MARKETS)

    scan_job_run(job_id=job.pk, lock_token=scan_job_claim(job_id=job.pk, owner="t"))

    record = json.loads(llm.requests[0]["messages"][1]["content"])["track_record"]
    assert 1 <= len(record) < 10
    assert len(json.dumps(record, separators=(",", ":"))) <= 400


def test_an_api_proposal_stores_the_last_price_read_when_it_was_created(market_data):
    policy = PolicyFactory()
    now = minute_of(timezone.now())
    # This minute and the next close at a known price: the price the read must return.
    market_data.control.pin_closes("BTC-EUR", {now * 60_000: "61234", (now + 1) * 60_000: "61234"})

    response = client_for(policy.user).post(
        reverse("proposal-list"),
        {"market": "BTC-EUR", "side": "buy", "amount_eur": "20", "confidence": 50},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert TradeProposal.objects.get().price_at_proposal == Decimal("61234")


def test_without_an_answer_from_the_exchange_the_proposal_is_stored_without_a_price(settings):
    settings.BITVAVO_API_URL = "http://127.0.0.1:9/v2"  # nothing listens there
    policy = PolicyFactory()

    response = client_for(policy.user).post(
        reverse("proposal-list"),
        {"market": "BTC-EUR", "side": "buy", "amount_eur": "20", "confidence": 50},
        format="json",
    )

    assert response.status_code == 201
    assert TradeProposal.objects.get().price_at_proposal is None
