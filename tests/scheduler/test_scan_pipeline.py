"""A scan end to end: simulator market data -> advisor -> budget -> PENDING proposal."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from budget.models import GptUsageLog
from scheduler.models import ScanJob
from scheduler.pipeline import scan_job_run
from scheduler.services import scan_job_claim
from tests.factories import PolicyFactory, ScanJobFactory
from tests.llm_server import llm_server
from trading.models import TradeProposal

pytestmark = pytest.mark.django_db

ALL_MARKETS = ["BTC-EUR", "ETH-EUR", "SOL-EUR", "XRP-EUR", "ADA-EUR"]
GOOD_REPLY = {
    "trade": True,
    "market": "ETH-EUR",
    "side": "buy",
    "amount_eur": "15.00",
    "confidence": 75,
    "rationale": "ETH up 4% on rising volume.",
}


@pytest.fixture
def scan_env(exchange, monkeypatch):
    """The scan role: the read-only key only, no LLM key unless a test sets one."""
    monkeypatch.setenv("ORACLE_ROLE", "scan")
    monkeypatch.delenv("BITVAVO_TRADE_KEY")
    monkeypatch.delenv("BITVAVO_TRADE_SECRET")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return exchange


@pytest.fixture
def job():
    policy = PolicyFactory(gpt_hourly_limit=5, gpt_daily_limit=20, proposal_ttl_minutes=30)
    return ScanJobFactory(user=policy.user, markets=ALL_MARKETS, interval_minutes=15)


def run(job):
    token = scan_job_claim(job_id=job.pk)
    assert token is not None
    return scan_job_run(job_id=job.pk, lock_token=token)


@pytest.fixture
def llm(monkeypatch, settings):
    def start(reply):
        server = llm_server(reply=reply)
        running = server.__enter__()
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        settings.OPENAI_BASE_URL = running.url
        started.append(server)
        return running

    started = []
    yield start
    for server in started:
        server.__exit__(None, None, None)


def test_the_offline_advisor_proposes_from_simulator_data(scan_env, job):
    outcome = run(job)

    assert outcome.status == "proposed", outcome
    proposal = TradeProposal.objects.get(pk=outcome.proposal_id)
    assert proposal.status == "PENDING" and proposal.source == "scan"
    assert proposal.scan_job_id == job.pk and proposal.market in ALL_MARKETS
    assert proposal.amount_eur == job.user.trading_policy.min_order_eur
    assert proposal.policy_hash == job.user.trading_policy.snapshot_and_hash()[1]
    assert timedelta(minutes=29) < proposal.expires_at - timezone.now() <= timedelta(minutes=30)
    usage = GptUsageLog.objects.get(scan_job=job)
    assert (usage.status, usage.model) == ("SUCCEEDED", "offline-momentum-v1")
    job.refresh_from_db()
    assert job.lock_token is None and job.last_started_at and job.last_finished_at
    assert timedelta(minutes=14) < job.next_run_at - timezone.now() <= timedelta(minutes=15)


def test_the_llm_path_proposes_and_records_the_tokens(scan_env, job, llm):
    server = llm(GOOD_REPLY)
    outcome = run(job)

    assert outcome.status == "proposed", outcome
    proposal = TradeProposal.objects.get(pk=outcome.proposal_id)
    assert (proposal.market, proposal.side, str(proposal.amount_eur), proposal.confidence) == (
        "ETH-EUR",
        "buy",
        "15.00",
        75,
    )
    usage = GptUsageLog.objects.get(scan_job=job)
    assert (usage.status, usage.prompt_tokens, usage.completion_tokens) == ("SUCCEEDED", 321, 45)
    request = server.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert "BTC-EUR" in request["messages"][1]["content"]


def test_no_trade_is_a_clean_outcome(scan_env, job, llm):
    llm({**GOOD_REPLY, "trade": False})
    assert run(job).status == "no_trade"
    assert not TradeProposal.objects.exists()
    assert GptUsageLog.objects.get().status == "SUCCEEDED"


@pytest.mark.parametrize(
    "reply, field",
    [
        ("this is not json {", "*"),
        ([1, 2, 3], "*"),
        ({**GOOD_REPLY, "confidence": 30}, "confidence"),
        ({**GOOD_REPLY, "confidence": "75"}, "confidence"),
        ({**GOOD_REPLY, "market": "DOGE-EUR"}, "market"),
        ({**GOOD_REPLY, "amount_eur": "-10"}, "amount_eur"),
        ({**GOOD_REPLY, "amount_eur": 12.5}, "amount_eur"),
        ({**GOOD_REPLY, "side": "hold"}, "side"),
        ({**GOOD_REPLY, "rationale": "x" * 50_000}, "rationale"),
        ({**GOOD_REPLY, "rationale": None}, "rationale"),
    ],
)
def test_bad_llm_output_is_rejected_with_a_reason_and_still_counts(
    scan_env, job, llm, reply, field
):
    llm(reply)
    outcome = run(job)

    assert outcome.status == "rejected"
    assert f"({field})" in outcome.detail
    assert not TradeProposal.objects.exists()
    usage = GptUsageLog.objects.get()
    assert usage.status == "FAILED" and usage.error.startswith("INVALID_OUTPUT")
    job.refresh_from_db()
    assert job.lock_token is None, "the lease is released"
    assert job.last_error.startswith("INVALID_OUTPUT")


def test_an_exhausted_budget_defers_the_job_without_a_failure(scan_env, job):
    policy = job.user.trading_policy
    policy.gpt_hourly_limit = 0
    policy.save()
    outcome = run(job)

    assert (outcome.status, outcome.detail) == ("budget_exhausted", "HOURLY_BUDGET_EXHAUSTED")
    job.refresh_from_db()
    assert job.consecutive_failures == 0
    assert timedelta(minutes=4) < job.next_run_at - timezone.now() <= timedelta(minutes=5)
    assert GptUsageLog.objects.get().status == "REFUSED"


def test_a_scan_without_its_lease_does_nothing(scan_env, job):
    token = scan_job_claim(job_id=job.pk)
    ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=timezone.now() - timedelta(seconds=1))
    assert scan_job_run(job_id=job.pk, lock_token=token).status == "lease_lost"
    assert not GptUsageLog.objects.exists()


def test_run_scan_prints_the_outcome(scan_env, job, capsys):
    call_command("run_scan", str(job.pk))
    assert f"scan job #{job.pk}: proposed proposal #" in capsys.readouterr().out
