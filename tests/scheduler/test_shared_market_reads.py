"""One market read serves every scan of that market in its time bucket, and a scan whose
rounded input is what the user's last decision saw records `unchanged` without an LLM call.
Real PostgreSQL and Redis, the simulator over HTTP counting the requests it was sent, and
scans from several threads at once."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache
from django.db import connection

from budget.models import GptUsageLog
from evaluation.models import AdvisorDecision
from exchange.transport import RateLimitState
from scheduler.market import TIMEFRAMES
from scheduler.services import scan_job_claim, scan_job_run
from tests.factories import AdvisorDecisionFactory, PolicyFactory, ScanJobFactory
from tests.scheduler.llm_server import Reply

MARKETS = ["BTC-EUR", "ETH-EUR"]
READS_PER_MARKET = 1 + len(TIMEFRAMES)  # the 24 h ticker and one candle read per timeframe
NO_TRADE = Reply(
    content='{"decision": "no_trade", "market": null, "side": null, '
    '"amount_eur": null, "confidence": null, "rationale": "Flat.", '
    '"exit_plan": null, "invalidation": null}'
)


@pytest.fixture
def long_bucket(settings):
    # One bucket for the whole test: no bucket edge can fall between two scans.
    settings.MARKET_SNAPSHOT_CACHE_SECONDS = 10**9
    return settings


def requests_sent(market_data) -> int:
    return market_data.control.state()["requests"]


def scan(job) -> str:
    token = scan_job_claim(job_id=job.pk, owner=f"scan-{job.pk}")
    return scan_job_run(job_id=job.pk, lock_token=token).status


def scan_in_thread(job) -> str:
    try:
        return scan(job)
    finally:
        connection.close()  # this thread's own connection


def jobs_for(users: int, *, markets=MARKETS):
    return [
        ScanJobFactory(user=PolicyFactory(allowlist=markets).user, markets=markets)
        for _ in range(users)
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_scans_of_many_users_read_each_market_once(market_data, offline, long_bucket):
    jobs = jobs_for(24)
    before = requests_sent(market_data)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(scan_in_thread, jobs))

    assert all(status in ("PROPOSED", "NO_TRADE") for status in statuses), statuses
    assert AdvisorDecision.objects.count() == len(jobs)
    # The read-only client asks for the exchange's time at most once (shared offset).
    sent = requests_sent(market_data) - before
    assert len(MARKETS) * READS_PER_MARKET <= sent <= len(MARKETS) * READS_PER_MARKET + 1
    # The transport's own accounting, from the exchange's rate-limit headers, agrees: the
    # key spent a market's worth of weight, not one per user.
    state = RateLimitState(os.environ["BITVAVO_READONLY_KEY"], key_role="readonly").get()
    assert state["limit"] - state["remaining"] <= sent


@pytest.mark.django_db(transaction=True)
def test_without_a_bucket_every_scan_reads_for_itself(market_data, offline, settings):
    settings.MARKET_SNAPSHOT_CACHE_SECONDS = 0
    jobs = jobs_for(3)
    before = requests_sent(market_data)

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(scan_in_thread, jobs))

    assert requests_sent(market_data) - before >= 3 * len(MARKETS) * READS_PER_MARKET


@pytest.mark.django_db
def test_an_unchanged_snapshot_is_recorded_without_a_call_or_budget(market_data, llm, long_bucket):
    llm.default = NO_TRADE
    (job,) = jobs_for(1)

    assert scan(job) == "NO_TRADE"
    assert scan(job) == "UNCHANGED"
    assert scan(job) == "UNCHANGED"

    assert llm.calls == 1
    assert GptUsageLog.objects.count() == 1, "no budget spent on the unchanged scans"
    decisions = list(AdvisorDecision.objects.order_by("created_at"))
    assert [d.decision for d in decisions] == ["no_trade", "unchanged", "unchanged"]
    assert len({d.input_hash for d in decisions}) == 1 and len(decisions[0].input_hash) == 64
    assert decisions[1].raw_reply == "" and decisions[1].prompt_tokens is None

    # The market moves past the rounding: the advisor is asked again.
    cache.clear()
    market_data.control.set_price("BTC-EUR", "12345.67")
    assert scan(job) == "NO_TRADE"
    assert llm.calls == 2
    assert AdvisorDecision.objects.order_by("-created_at").first().input_hash != (
        decisions[0].input_hash
    )


@pytest.mark.django_db
def test_after_a_rejected_reply_the_same_snapshot_is_asked_again(market_data, llm, long_bucket):
    llm.default = NO_TRADE
    (job,) = jobs_for(1)
    assert scan(job) == "NO_TRADE"
    last = AdvisorDecision.objects.get()
    AdvisorDecisionFactory(
        user=job.user, scan_job=job, decision="rejected", reason="X", input_hash=last.input_hash
    )

    assert scan(job) == "NO_TRADE"
    assert llm.calls == 2


@pytest.mark.django_db
def test_unchanged_detection_off_asks_every_time(market_data, llm, long_bucket):
    long_bucket.SCAN_UNCHANGED_DIGITS = 0
    llm.default = NO_TRADE
    (job,) = jobs_for(1)

    assert [scan(job), scan(job)] == ["NO_TRADE", "NO_TRADE"]
    assert llm.calls == 2
