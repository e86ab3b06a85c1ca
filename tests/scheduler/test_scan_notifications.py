"""What scans tell the user: a budget refusal (once per limit and window) and a recovered lock
(by the sweep or by a claim that takes an expired lease over)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import NotificationDelivery
from notifications.services import notification_event_handle, notification_settings_update
from scheduler.models import ScanJob
from scheduler.services import (
    scan_job_claim,
    scan_job_run,
    scan_jobs_claim_due,
    scan_jobs_release_expired,
)
from tests.factories import GptUsageLogFactory, PolicyFactory, ScanJobFactory
from tests.workers import queue_drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def notify_queue():
    queue_drain("notify")
    yield lambda: [args for task, args in queue_drain("notify") if task.endswith("notify_event")]
    queue_drain("notify")


def configured_job():
    policy = PolicyFactory(gpt_hourly_limit=1)
    notification_settings_update(user=policy.user, email="owner@example.com")
    return ScanJobFactory(user=policy.user, markets=["BTC-EUR"], interval_minutes=15)


def handled(published) -> list[NotificationDelivery]:
    ids = [
        pk
        for event, facts in published
        for pk in notification_event_handle(event=event, facts=facts)
    ]
    return list(NotificationDelivery.objects.filter(pk__in=ids))


def leased_then_expired(job, holder="crashed-worker"):
    scan_job_claim(job_id=job.pk, owner=holder)
    past = timezone.now() - timedelta(seconds=1)
    ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=past, next_run_at=past)
    return ScanJob.objects.get(pk=job.pk).lock_expires_at


def test_a_budget_refusal_notifies_once_per_limit_and_window(market_data, offline, notify_queue):
    job = configured_job()
    GptUsageLogFactory(user=job.user, status="SUCCEEDED", finished_at=timezone.now())

    for _ in range(2):
        token = scan_job_claim(job_id=job.pk, owner="test")
        assert scan_job_run(job_id=job.pk, lock_token=token).status == "BUDGET_REFUSED"

    published = notify_queue()
    assert [event for event, _ in published] == ["budget_exhausted", "budget_exhausted"]
    facts = published[0][1]
    assert (facts["user_id"], facts["code"], facts["scan_job_id"]) == (
        job.user_id,
        "HOURLY_BUDGET_EXHAUSTED",
        job.pk,
    )
    assert facts["limits"]["hourly_limit"] == 1
    [delivery] = handled(published)
    assert NotificationDelivery.objects.count() == 1  # two refusals, one notice
    assert delivery.event == "budget_exhausted"
    assert delivery.payload["data"]["code"] == "HOURLY_BUDGET_EXHAUSTED"


def test_the_sweep_notifies_the_owner_of_a_recovered_lock(notify_queue):
    job = configured_job()
    expired_at = leased_then_expired(job)

    assert scan_jobs_release_expired() == 1

    [(event, facts)] = notify_queue()
    assert event == "scan_lock_recovered"
    assert facts["job_id"] == job.pk and facts["holder"] == "crashed-worker"
    assert facts["expired_at"] == expired_at.isoformat() and facts["recovered_by"] == "sweep"
    [delivery] = handled([(event, facts)])
    assert delivery.subject == f"Scan job #{job.pk}: an expired lock was recovered"


def test_a_claim_taking_an_expired_lease_over_notifies_but_a_free_job_does_not(notify_queue):
    expired_job = configured_job()
    free_job = configured_job()
    ScanJob.objects.filter(pk=free_job.pk).update(next_run_at=timezone.now())
    leased_then_expired(expired_job)

    claimed = scan_jobs_claim_due(owner="fresh-worker", limit=10)

    assert {pk for pk, _ in claimed} == {expired_job.pk, free_job.pk}
    [(event, facts)] = notify_queue()
    assert (event, facts["job_id"], facts["recovered_by"]) == (
        "scan_lock_recovered",
        expired_job.pk,
        "claim",
    )
