"""Scans end to end: the read-only client against the simulator over HTTP, the advisor
(offline rules, or the LLM through the openai package against a local test server), the
budget, and the proposal service, on PostgreSQL."""

import json
import threading
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from budget.models import GptUsageLog
from scheduler.models import ScanJob
from scheduler.services import scan_job_claim, scan_job_run, scan_jobs_claim_due
from tests.factories import GptUsageLogFactory, PolicyFactory, ScanJobFactory, holding_give
from tests.scheduler.conftest import proposal_reply
from tests.scheduler.llm_server import Reply
from trading.models import Policy, TradeProposal

MARKETS = ["BTC-EUR", "ETH-EUR"]


def scan_job(**policy_changes):
    policy = PolicyFactory(**policy_changes)
    return ScanJobFactory(user=policy.user, markets=MARKETS, interval_minutes=15)


def run(job):
    token = scan_job_claim(job_id=job.pk, owner="test")
    return scan_job_run(job_id=job.pk, lock_token=token)


def assert_released(job, *, failures=0):
    job.refresh_from_db()
    assert job.lock_token is None and job.locked_by is None
    assert job.consecutive_failures == failures
    assert job.next_run_at - job.last_finished_at >= timedelta(minutes=15)


@pytest.mark.django_db
def test_an_offline_scan_stores_a_pending_proposal_end_to_end(market_data, offline, capsys):
    job = scan_job()
    for market in MARKETS:  # whichever way the market moved, the user may sell or buy
        holding_give(job.user, market=market, quantity="1", price="1")

    call_command("run_scan", str(job.pk))

    out = capsys.readouterr().out
    proposal = TradeProposal.objects.get(scan_job=job)
    assert f"scan job #{job.pk}: PROPOSED" in out
    assert f"proposal: #{proposal.pk} (PENDING)" in out
    assert (proposal.status, proposal.source, proposal.user) == ("PENDING", "scan", job.user)
    assert (
        proposal.market in MARKETS and proposal.amount_eur == job.user.trading_policy.min_order_eur
    )
    # The rules follow the move: a fall is a sell, a rise a buy (the rationale states the move).
    moved_down = f"{proposal.market} moved -" in proposal.rationale
    assert proposal.side == ("sell" if moved_down else "buy"), proposal.rationale
    policy = Policy.objects.get(user=job.user)
    assert proposal.policy_hash == Policy.hash_snapshot(policy.snapshot())
    ttl = proposal.expires_at - proposal.created_at
    assert abs(ttl - timedelta(minutes=policy.proposal_ttl_minutes)) < timedelta(seconds=5)
    usage = GptUsageLog.objects.get(scan_job=job)
    assert (usage.status, usage.model, usage.prompt_tokens) == (
        "SUCCEEDED",
        "offline-momentum-v1",
        0,
    )
    assert_released(job)


@pytest.mark.django_db
def test_an_llm_scan_stores_a_pending_proposal_with_the_tokens_used(market_data, llm, capsys):
    llm.default = proposal_reply(market="ETH-EUR", side="buy", amount_eur="30.00", confidence=75)
    job = scan_job()

    call_command("run_scan", str(job.pk))

    out = capsys.readouterr().out
    proposal = TradeProposal.objects.get(scan_job=job)
    assert f"scan job #{job.pk}: PROPOSED" in out and f"proposal: #{proposal.pk}" in out
    assert (proposal.market, proposal.side, str(proposal.amount_eur), proposal.confidence) == (
        "ETH-EUR",
        "buy",
        "30.00",
        75,
    )
    assert proposal.status == "PENDING"
    usage = GptUsageLog.objects.get(scan_job=job)
    assert (usage.status, usage.model, usage.prompt_tokens, usage.completion_tokens) == (
        "SUCCEEDED",
        "test-model",
        321,
        45,
    )
    assert usage.tokens_estimate > 400
    assert llm.calls == 1
    request = llm.requests[0]
    schema = request["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["properties"]["confidence"]["enum"] == [0, 25, 50, 75, 100]
    prompt = json.loads(request["messages"][1]["content"])
    assert set(prompt["markets"]) == set(MARKETS)
    assert prompt["limits"]["max_order_eur"] == "100.00"
    assert {"last", "change_24h", "volatility_1h"} <= set(prompt["markets"]["BTC-EUR"])
    assert_released(job)


@pytest.mark.django_db
def test_the_llm_is_told_the_users_holdings_and_allocation_left(market_data, llm):
    llm.default = proposal_reply(market="ETH-EUR", side="buy", amount_eur="30.00", confidence=75)
    job = scan_job(allocation_eur=Decimal("300"))
    holding_give(job.user, market="BTC-EUR", quantity="0.002", price="50000")  # 100 EUR cost

    run(job)

    prompt = json.loads(llm.requests[0]["messages"][1]["content"])
    limits = prompt["limits"]
    assert limits["allocation_left_eur"] == "200.00"
    btc, eth = limits["holdings"]["BTC-EUR"], limits["holdings"]["ETH-EUR"]
    last = Decimal(prompt["markets"]["BTC-EUR"]["last"])
    assert (btc["asset"], btc["quantity"], btc["open_sells_eur"]) == ("BTC", "0.002", "0")
    assert Decimal(btc["sellable_eur"]) == (Decimal("0.002") * last).quantize(
        Decimal("0.01"), ROUND_DOWN
    )
    assert (eth["quantity"], Decimal(eth["sellable_eur"])) == ("0", 0)
    assert "sellable_eur" in llm.requests[0]["messages"][0]["content"]


@pytest.mark.django_db
def test_no_trade_stores_nothing_and_still_counts_the_call(market_data, llm):
    job = scan_job()
    outcome = run(job)
    assert outcome.status == "NO_TRADE"
    assert not TradeProposal.objects.exists()
    assert GptUsageLog.objects.get(scan_job=job).status == "SUCCEEDED"
    assert_released(job)


FUZZ = {
    "malformed JSON": Reply(content='{"decision": "propose", "market": "BTC-'),
    "not an object": Reply(content='["propose"]'),
    "wrong types": proposal_reply(amount_eur=["25"], confidence="high"),
    "confidence 30": proposal_reply(confidence=30),
    "unknown market": proposal_reply(market="DOGE-EUR"),
    "negative amount": proposal_reply(amount_eur="-25.00"),
    "huge rationale": proposal_reply(rationale="buy " * 50_000),
    "empty content": Reply(content=None),
}
FUZZ_FIELD = {
    "malformed JSON": "output",
    "not an object": "output",
    "wrong types": "amount_eur",
    "confidence 30": "confidence",
    "unknown market": "market",
    "negative amount": "amount_eur",
    "huge rationale": "rationale",
    "empty content": "output",
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", FUZZ)
def test_invalid_llm_output_is_rejected_with_a_reason_and_its_call_closed(
    market_data, llm, case, caplog
):
    llm.default = FUZZ[case]
    job = scan_job()

    outcome = run(job)

    assert outcome.status == "OUTPUT_REJECTED"
    assert outcome.detail.startswith(f"ADVISOR_OUTPUT_INVALID: {FUZZ_FIELD[case]}: ")
    assert not TradeProposal.objects.exists()
    usage = GptUsageLog.objects.get(scan_job=job)
    assert (usage.status, usage.prompt_tokens, usage.completion_tokens) == ("FAILED", 321, 45)
    assert usage.error == outcome.detail
    assert "advisor output rejected" in caplog.text
    assert llm.calls == 1
    assert_released(job, failures=1)
    job.refresh_from_db()
    assert job.last_error == outcome.detail


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(status=500), "LLM_HTTP_500"),
        (Reply(status=429), "LLM_HTTP_429"),
        (Reply(delay=1.5), "LLM_TIMEOUT"),
        (Reply(raw_body="<html>502 Bad Gateway</html>"), "LLM_BAD_RESPONSE"),
    ],
)
def test_a_failed_llm_call_is_made_once_counted_and_backed_off(
    market_data, llm, settings, reply, code
):
    settings.OPENAI_TIMEOUT = 0.5
    llm.default = reply
    job = scan_job()

    outcome = run(job)

    assert llm.calls == 1, "the SDK retried on its own: an uncounted call"
    assert outcome.status == "FAILED" and outcome.detail.startswith(f"{code}: ")
    usage = GptUsageLog.objects.get(scan_job=job)
    assert usage.status == "FAILED" and usage.error == outcome.detail
    assert not TradeProposal.objects.exists()
    assert_released(job, failures=1)


@pytest.mark.django_db
def test_a_budget_refusal_reschedules_the_job_without_calling_the_llm(market_data, llm):
    job = scan_job(gpt_hourly_limit=1)
    GptUsageLogFactory(user=job.user, status="SUCCEEDED", finished_at=timezone.now())

    outcome = run(job)

    assert (outcome.status, outcome.detail) == ("BUDGET_REFUSED", "HOURLY_BUDGET_EXHAUSTED")
    assert llm.calls == 0
    refused = GptUsageLog.objects.get(pk=outcome.usage_id)
    assert (refused.status, refused.scan_job_id) == ("REFUSED", job.pk)
    assert_released(job, failures=0)  # rescheduled at the interval, not failed
    job.refresh_from_db()
    assert job.last_error == "HOURLY_BUDGET_EXHAUSTED"


@pytest.mark.django_db
def test_markets_outside_the_allowlist_are_not_scanned(market_data, llm):
    job = scan_job(allowlist=["SOL-EUR"])
    outcome = run(job)
    assert (outcome.status, outcome.detail) == ("NO_MARKETS", "SCAN_NO_ALLOWED_MARKETS")
    assert llm.calls == 0 and not GptUsageLog.objects.exists()
    assert_released(job)


@pytest.mark.django_db
def test_an_exchange_failure_fails_the_scan_before_any_call(market_data, llm):
    market_data.control.inject("html_502_no_commit", method="GET", path="/ticker/24h")
    job = scan_job()

    outcome = run(job)

    assert outcome.status == "FAILED" and outcome.detail.startswith("EXCHANGE_")
    assert llm.calls == 0 and not GptUsageLog.objects.exists()
    assert_released(job, failures=1)


@pytest.mark.django_db
def test_run_scan_refuses_a_job_another_worker_holds(market_data, offline):
    job = scan_job()
    scan_job_claim(job_id=job.pk, owner="busy-worker")
    with pytest.raises(CommandError, match="SCAN_JOB_LOCKED"):
        call_command("run_scan", str(job.pk))
    assert not GptUsageLog.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_scan_whose_lease_was_taken_over_during_the_call_stores_nothing(market_data, llm):
    job = scan_job()
    taken = {}

    def take_over(request):
        # While the LLM "thinks", the lease expires and another dispatcher takes the job.
        ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=timezone.now())
        taken["token"] = scan_job_claim(job_id=job.pk, owner="other-worker")
        connection.close()

    llm.default = proposal_reply()
    llm.script(Reply(content=llm.default.content, before=take_over))

    outcome = run(job)

    assert outcome.status == "LEASE_LOST"
    assert not TradeProposal.objects.exists()
    assert GptUsageLog.objects.get(scan_job=job).status == "SUCCEEDED"  # the call happened
    job.refresh_from_db()
    assert (job.locked_by, job.lock_token) == ("other-worker", taken["token"])


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_scans_with_an_hourly_limit_of_five_reach_the_llm_five_times(
    market_data, llm, settings
):
    settings.OPENAI_TIMEOUT = 60.0  # the admitted calls are held below, on purpose
    policy = PolicyFactory(gpt_hourly_limit=5, gpt_daily_limit=100)
    for _ in range(30):
        ScanJobFactory(user=policy.user, markets=["BTC-EUR"], next_run_at=timezone.now())
    claims = scan_jobs_claim_due(owner="test", limit=30)
    refusals_done = threading.Event()
    # The admitted calls are answered once the others are refused: a decision recorded earlier
    # would let a late scan skip the budget as UNCHANGED, which is not what is counted here.
    llm.default = Reply(
        content=json.dumps({"decision": "no_trade"}),
        before=lambda request: refusals_done.wait(timeout=60),
    )
    start = threading.Barrier(30)
    outcomes, errors = [], []

    def scan(job_id, token):
        try:
            start.wait()
            outcomes.append(scan_job_run(job_id=job_id, lock_token=token).status)
            if outcomes.count("BUDGET_REFUSED") == 25:
                refusals_done.set()
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=scan, args=claim) for claim in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert llm.calls == 5
    assert sorted(outcomes) == ["BUDGET_REFUSED"] * 25 + ["NO_TRADE"] * 5
    statuses = GptUsageLog.objects.values_list("status", flat=True)
    assert sorted(statuses) == ["REFUSED"] * 25 + ["SUCCEEDED"] * 5
    assert not ScanJob.objects.filter(lock_token__isnull=False).exists()
