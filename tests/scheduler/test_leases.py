import multiprocessing
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from scheduler.errors import ScanJobLocked, ScanLeaseLost
from scheduler.models import ScanJob
from scheduler.selectors import scan_jobs_status
from scheduler.services import (
    scan_job_claim,
    scan_job_delay,
    scan_job_extend_lease,
    scan_job_release,
    scan_job_start,
    scan_jobs_claim_due,
    scan_jobs_release_expired,
)
from tests.factories import ScanJobFactory, UserFactory

TTL = timedelta(minutes=2)


def expire(job):
    """Time passes beyond the lease (a leased job is next due when its lease expires)."""
    past = timezone.now() - timedelta(seconds=1)
    ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=past, next_run_at=past)


def _claim_until_empty(owner, start, results):
    start.wait()
    claimed = []
    while batch := scan_jobs_claim_due(owner=owner, limit=10, ttl=TTL):
        claimed += [(pk, str(token)) for pk, token in batch]
    connections.close_all()
    results.put((owner, claimed))


@pytest.mark.django_db(transaction=True)
def test_four_processes_claiming_1000_due_jobs_claim_each_exactly_once():
    user = UserFactory()
    due = timezone.now() - timedelta(minutes=1)
    ScanJob.objects.bulk_create(ScanJob(user=user, next_run_at=due) for _ in range(1000))
    connections.close_all()  # the children must open their own connections
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(4), fork.Queue()
    processes = [
        fork.Process(target=_claim_until_empty, args=(f"claimer-{n}", start, results))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    per_owner = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    claims = [claim for owned in per_owner.values() for claim in owned]
    assert len(claims) == 1000
    assert Counter(pk for pk, _ in claims).most_common(1)[0][1] == 1, "a job was claimed twice"
    assert sum(1 for owned in per_owner.values() if owned) >= 2, "the claimers did compete"
    recorded = dict(ScanJob.objects.values_list("pk", "lock_token"))
    owners = dict(ScanJob.objects.values_list("pk", "locked_by"))
    for owner, owned in per_owner.items():
        for pk, token in owned:
            assert (str(recorded[pk]), owners[pk]) == (token, owner)


@pytest.mark.django_db
def test_only_enabled_due_jobs_with_a_free_or_expired_lease_are_claimed():
    now = timezone.now()
    due = ScanJobFactory(next_run_at=now - timedelta(minutes=1))
    ScanJobFactory(next_run_at=now + timedelta(minutes=1))
    ScanJobFactory(next_run_at=now - timedelta(minutes=1), enabled=False)
    leased = ScanJobFactory(next_run_at=now - timedelta(minutes=1))
    scan_job_claim(job_id=leased.pk, owner="other", ttl=TTL)

    claims = scan_jobs_claim_due(owner="me", limit=10, ttl=TTL)

    assert [pk for pk, _ in claims] == [due.pk]
    due.refresh_from_db()
    assert (due.locked_by, due.lock_token) == ("me", claims[0][1])
    assert due.lock_expires_at == due.locked_at + TTL == due.next_run_at
    assert scan_jobs_claim_due(owner="me", limit=10, ttl=TTL) == []


@pytest.mark.django_db
def test_an_expired_lease_is_reclaimed_with_a_new_token_and_the_old_one_is_powerless():
    job = ScanJobFactory(next_run_at=timezone.now() - timedelta(minutes=1))
    [(_, old_token)] = scan_jobs_claim_due(owner="slow-worker", limit=1, ttl=TTL)
    expire(job)

    [(_, new_token)] = scan_jobs_claim_due(owner="fresh-worker", limit=1, ttl=TTL)

    assert new_token != old_token
    # The slow worker wakes up: it can neither extend, start, nor release the new lease.
    with pytest.raises(ScanLeaseLost):
        scan_job_extend_lease(job_id=job.pk, lock_token=old_token, ttl=TTL)
    assert scan_job_start(job_id=job.pk, lock_token=old_token) is None
    assert scan_job_release(job_id=job.pk, lock_token=old_token, succeeded=True) is False
    job.refresh_from_db()
    assert (job.locked_by, job.lock_token) == ("fresh-worker", new_token)


@pytest.mark.django_db
def test_a_claim_token_starts_one_run_only():
    job = ScanJobFactory(next_run_at=timezone.now() - timedelta(minutes=1))
    [(_, claim_token)] = scan_jobs_claim_due(owner="w", limit=1, ttl=TTL)

    run_token = scan_job_start(job_id=job.pk, lock_token=claim_token)

    assert run_token not in (None, claim_token)
    assert scan_job_start(job_id=job.pk, lock_token=claim_token) is None, "a redelivery runs"
    job.refresh_from_db()
    assert job.lock_token == run_token and job.last_started_at is not None


@pytest.mark.django_db
def test_release_schedules_the_next_run_after_the_interval():
    job = ScanJobFactory(interval_minutes=15, consecutive_failures=2, last_error="X")
    token = scan_job_claim(job_id=job.pk, owner="w", ttl=TTL)

    assert scan_job_release(job_id=job.pk, lock_token=token, succeeded=True) is True

    job.refresh_from_db()
    assert job.lock_token is job.locked_by is job.lock_expires_at is job.locked_at is None
    assert (job.consecutive_failures, job.last_error) == (0, "")
    assert job.next_run_at - job.last_finished_at == timedelta(minutes=15)


@pytest.mark.django_db
def test_failures_back_off_exponentially_up_to_a_cap():
    job = ScanJobFactory(interval_minutes=15, consecutive_failures=1)
    token = scan_job_claim(job_id=job.pk, owner="w", ttl=TTL)

    scan_job_release(job_id=job.pk, lock_token=token, succeeded=False, error="EXCHANGE_X: down")

    job.refresh_from_db()
    assert (job.consecutive_failures, job.last_error) == (2, "EXCHANGE_X: down")
    assert job.next_run_at - job.last_finished_at == timedelta(minutes=60)
    assert scan_job_delay(interval_minutes=15, failures=20) == timedelta(hours=6)
    assert scan_job_delay(interval_minutes=600, failures=3) == timedelta(minutes=600)


@pytest.mark.django_db
def test_expired_leases_are_released_counted_and_due_again():
    past = timezone.now() - timedelta(minutes=5)
    crashed = ScanJobFactory(next_run_at=past)
    alive = ScanJobFactory(next_run_at=past)
    scan_jobs_claim_due(owner="w", limit=2, ttl=TTL)
    expire(crashed)
    assert scan_jobs_status()["expired_leases"] == 1

    assert scan_jobs_release_expired() == 1

    crashed.refresh_from_db()
    alive.refresh_from_db()
    assert crashed.lock_token is None and crashed.last_error == "SCAN_LEASE_EXPIRED"
    assert crashed.consecutive_failures == 1
    assert alive.lock_token is not None
    assert scan_jobs_status() == {
        "jobs_enabled": 2,
        "due": 1,
        "leased": 1,
        "expired_leases": 0,
        "failing": 1,
    }
    assert [pk for pk, _ in scan_jobs_claim_due(owner="w2", limit=5, ttl=TTL)] == [crashed.pk]


@pytest.mark.django_db
def test_a_manual_claim_refuses_a_live_lease_and_an_unknown_job():
    job = ScanJobFactory()
    scan_job_claim(job_id=job.pk, owner="worker", ttl=TTL)
    with pytest.raises(ScanJobLocked) as locked:
        scan_job_claim(job_id=job.pk, owner="operator", ttl=TTL)
    assert "leased by worker" in locked.value.message
    with pytest.raises(Exception) as missing:
        scan_job_claim(job_id=job.pk + 1000, owner="operator", ttl=TTL)
    assert missing.value.code == "SCAN_JOB_NOT_FOUND"
    assert isinstance(uuid.UUID(str(ScanJob.objects.get(pk=job.pk).lock_token)), uuid.UUID)
