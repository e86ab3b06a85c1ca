"""/metrics: every family is served, and each one moves when what it counts changes."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from budget.errors import BudgetExhausted
from budget.services import budget_admit, budget_close
from exchange.orders import TradeClient
from scheduler.errors import ScanJobLocked
from scheduler.models import ScanJob
from scheduler.services import scan_job_claim, scan_jobs_claim_due, scan_jobs_release_expired
from tests.factories import ScanJobFactory, TradeExecutionFactory, TradeProposalFactory
from trading.claim import preflight_refusal_record

pytestmark = pytest.mark.django_db

FAMILIES = {
    "oracle_executions",
    "oracle_executions_ended",
    "oracle_submitting_oldest_age_seconds",
    "oracle_preflight_rejections",
    "oracle_exchange_calls",
    "oracle_exchange_call_latency_seconds",
    "oracle_exchange_ratelimit_remaining",
    "oracle_exchange_ratelimit_limit",
    "oracle_scan_jobs",
    "oracle_scan_jobs_claimed",
    "oracle_scan_lease_contention",
    "oracle_scan_leases_expired",
    "oracle_llm_calls",
    "oracle_llm_tokens",
    "oracle_llm_budget_refusals",
    "oracle_holdings_difference",
    "oracle_holdings_alert",
    "oracle_llm_calls_in_flight",
    "oracle_llm_calls_skipped_unchanged",
}


def scrape(client) -> dict[tuple, float]:
    """{(sample name, (label, value), ...): value} of one scrape, plus the family names."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        samples[("family", family.name)] = 1
        for sample in family.samples:
            samples[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, *sorted(labels.items())), 0)


def test_every_family_is_served_on_an_empty_database(client):
    samples = scrape(client)
    assert {key[1] for key in samples if key[0] == "family"} >= FAMILIES


def test_submitting_age_follows_the_oldest_submitting_execution(client):
    assert value(scrape(client), "oracle_submitting_oldest_age_seconds") == 0
    TradeExecutionFactory(status="SUBMITTING", submitting_at=timezone.now() - timedelta(seconds=90))
    age = value(scrape(client), "oracle_submitting_oldest_age_seconds")
    assert 90 <= age < 120
    assert value(scrape(client), "oracle_executions", status="SUBMITTING", error_code="") == 1


def test_preflight_rejections_are_counted_by_code_once_committed(
    client, django_capture_on_commit_callbacks
):
    proposal = TradeProposalFactory()
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        for codes in (["COOLDOWN_ACTIVE", "HOURLY_CAP_REACHED"], ["COOLDOWN_ACTIVE"]):
            preflight_refusal_record(
                proposal_id=proposal.pk, user_id=proposal.user_id, preflight={"failed_codes": codes}
            )
    with django_capture_on_commit_callbacks(execute=False):  # rolled back: never committed
        preflight_refusal_record(
            proposal_id=proposal.pk,
            user_id=proposal.user_id,
            preflight={"failed_codes": ["HOURLY_CAP_REACHED"]},
        )
    samples = scrape(client)

    def grew(code):
        name = "oracle_preflight_rejections_total"
        return value(samples, name, code=code) - value(before, name, code=code)

    assert grew("COOLDOWN_ACTIVE") == 2
    assert grew("HOURLY_CAP_REACHED") == 1


def test_exchange_calls_latency_and_rate_limit_come_from_real_calls(client, exchange):
    before = scrape(client)
    trade = TradeClient()
    order = trade.place_market_order(
        market="BTC-EUR", side="buy", client_order_id=uuid.uuid4(), amount_quote=Decimal("20")
    )
    assert trade.get_order(market="BTC-EUR", client_order_id=uuid.uuid4()) is None  # 240
    assert order["orderId"]
    after = scrape(client)

    placed = {"key_role": "trade", "method": "POST", "endpoint": "/v2/order", "status": "200"}
    missing = {"key_role": "trade", "method": "GET", "endpoint": "/v2/order", "status": "404"}
    for labels in (placed, missing):
        grew = value(after, "oracle_exchange_calls_total", **labels) - value(
            before, "oracle_exchange_calls_total", **labels
        )
        assert grew == 1, labels
    count = "oracle_exchange_call_latency_seconds_count"
    assert value(after, count, key_role="trade") - value(before, count, key_role="trade") == 2
    inf = value(after, "oracle_exchange_call_latency_seconds_bucket", key_role="trade", le="+Inf")
    assert inf == value(after, count, key_role="trade")
    limit = value(after, "oracle_exchange_ratelimit_limit", key_role="trade")
    remaining = value(after, "oracle_exchange_ratelimit_remaining", key_role="trade")
    assert limit > 0 and 0 <= remaining < limit


def test_scan_claims_contention_and_expired_leases(client):
    job = ScanJobFactory(next_run_at=timezone.now() - timedelta(minutes=1))
    before = scrape(client)
    assert scan_jobs_claim_due(owner="metrics-test", limit=10) != []
    with pytest.raises(ScanJobLocked):
        scan_job_claim(job_id=job.pk, owner="someone-else")
    leased = scrape(client)
    ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=timezone.now() - timedelta(seconds=1))
    expired = scrape(client)
    assert scan_jobs_release_expired() == 1
    recovered = scrape(client)

    def grew(samples, name):
        return value(samples, name) - value(before, name)

    assert grew(leased, "oracle_scan_jobs_claimed_total") == 1
    assert grew(leased, "oracle_scan_lease_contention_total") == 1
    assert value(leased, "oracle_scan_jobs", state="leased", enabled="true") == 1
    assert value(expired, "oracle_scan_jobs", state="lease_expired", enabled="true") == 1
    assert grew(expired, "oracle_scan_leases_expired_total") == 0
    assert grew(recovered, "oracle_scan_leases_expired_total") == 1
    assert value(recovered, "oracle_scan_jobs", state="free", enabled="true") == 1
    assert value(recovered, "oracle_scan_jobs", state="failing", enabled="true") == 1


def test_llm_calls_tokens_and_budget_refusals(client, django_user_model):
    user = django_user_model.objects.create(username="llm-metrics")
    admit = {"user_id": user.pk, "model": "m-1", "reason": "scan", "tokens_estimate": 10}
    before = scrape(client)
    usage = budget_admit(daily_limit=1, hourly_limit=1, **admit)
    in_flight = scrape(client)
    budget_close(usage_id=usage.pk, status="SUCCEEDED", prompt_tokens=321, completion_tokens=45)
    with pytest.raises(BudgetExhausted):
        budget_admit(daily_limit=1, hourly_limit=1, **admit)
    samples = scrape(client)

    def grew(name, **labels):
        return value(samples, name, **labels) - value(before, name, **labels)

    assert value(in_flight, "oracle_llm_calls_in_flight") == 1
    assert value(samples, "oracle_llm_calls_in_flight") == 0
    assert grew("oracle_llm_calls_total", status="SUCCEEDED", model="m-1") == 1
    assert grew("oracle_llm_calls_total", status="REFUSED", model="m-1") == 1
    assert grew("oracle_llm_tokens_total", kind="prompt", model="m-1") == 321
    assert grew("oracle_llm_tokens_total", kind="completion", model="m-1") == 45
    assert grew("oracle_llm_budget_refusals_total", code="DAILY_BUDGET_EXHAUSTED") == 1
