"""Scan leases: claimed once, recovered after expiry, released only by their holder."""

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from scheduler.models import ScanJob
from scheduler.services import (
    scan_job_claim,
    scan_job_extend_lease,
    scan_job_release,
    scan_jobs_claim_due,
    scan_jobs_release_expired,
)
from tests.celery_workers import database_url
from tests.factories import ScanJobFactory, UserFactory

pytestmark = pytest.mark.django_db

CLAIMER = """
import json, sys, time
import django
django.setup()
from scheduler.services import scan_jobs_claim_due
# Start together: every process is set up before the first claim.
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
claimed = []
while True:
    batch = scan_jobs_claim_due(owner=sys.argv[1], limit=5)
    if not batch:
        break
    claimed += [job_id for job_id, _ in batch]
print(json.dumps(claimed))
"""


def due_jobs(count, user=None):
    user = user or UserFactory()
    past = timezone.now() - timedelta(seconds=1)
    return ScanJob.objects.bulk_create(
        ScanJob(user=user, markets=["BTC-EUR"], next_run_at=past) for _ in range(count)
    )


@pytest.mark.django_db(transaction=True)
def test_four_processes_claiming_1000_due_jobs_claim_each_exactly_once():
    jobs = due_jobs(1000)
    env_db = database_url()
    start_at = str(time.time() + 5)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, f"claimer-{i}", start_at],
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "DATABASE_URL": env_db},
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    claimed = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        claimed.append(json.loads(out))

    counts = Counter(job_id for batch in claimed for job_id in batch)
    assert len(counts) == 1000
    assert set(counts.values()) == {1}
    assert {job.pk for job in jobs} == set(counts)
    assert all(batch for batch in claimed), "every process got some of the work"
    owners = set(ScanJob.objects.values_list("locked_by", flat=True))
    assert owners == {f"claimer-{i}" for i in range(4)}


def test_a_claimed_job_is_not_claimed_again_while_its_lease_runs():
    due_jobs(3)
    assert len(scan_jobs_claim_due(owner="a")) == 3
    assert scan_jobs_claim_due(owner="b") == []


def test_an_expired_lease_is_claimed_again():
    (job,) = due_jobs(1)
    [(_, first)] = scan_jobs_claim_due(owner="crashed", ttl=timedelta(seconds=60))
    ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=timezone.now() - timedelta(seconds=1))
    [(job_id, second)] = scan_jobs_claim_due(owner="b")
    assert job_id == job.pk and second != first
    job.refresh_from_db()
    assert job.locked_by == "b"


def test_a_stale_token_can_neither_release_nor_extend_a_newer_lease():
    (job,) = due_jobs(1)
    [(_, stale)] = scan_jobs_claim_due(owner="slow")
    ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=timezone.now() - timedelta(seconds=1))
    [(_, fresh)] = scan_jobs_claim_due(owner="fast")

    assert not scan_job_release(job_id=job.pk, lock_token=stale, outcome="succeeded")
    assert not scan_job_extend_lease(job_id=job.pk, lock_token=stale)
    job.refresh_from_db()
    assert (job.lock_token, job.locked_by) == (fresh, "fast")
    assert scan_job_release(job_id=job.pk, lock_token=fresh, outcome="succeeded")


def test_release_schedules_the_next_run_and_backs_off_after_failures():
    job = ScanJobFactory(interval_minutes=10, next_run_at=timezone.now())
    token = scan_job_claim(job_id=job.pk)
    assert scan_job_release(job_id=job.pk, lock_token=token, outcome="failed", error="boom")
    job.refresh_from_db()
    assert job.consecutive_failures == 1 and job.last_error == "boom"
    assert job.lock_token is None and job.locked_by is None
    delay = job.next_run_at - timezone.now()
    assert timedelta(minutes=19) < delay <= timedelta(minutes=20)

    token = scan_job_claim(job_id=job.pk)
    scan_job_release(job_id=job.pk, lock_token=token, outcome="succeeded")
    job.refresh_from_db()
    assert job.consecutive_failures == 0
    assert timedelta(minutes=9) < job.next_run_at - timezone.now() <= timedelta(minutes=10)


def test_a_disabled_or_future_job_is_not_due():
    ScanJobFactory(enabled=False, next_run_at=timezone.now() - timedelta(minutes=1))
    ScanJobFactory(next_run_at=timezone.now() + timedelta(minutes=1))
    assert scan_jobs_claim_due() == []


def test_expired_leases_are_recovered_and_counted():
    jobs = due_jobs(3)
    scan_jobs_claim_due(owner="dead")
    ScanJob.objects.filter(pk__in=[j.pk for j in jobs[:2]]).update(
        lock_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert scan_jobs_release_expired() == 2
    assert ScanJob.objects.filter(lock_token__isnull=True).count() == 2
    assert scan_job_claim(job_id=jobs[2].pk) is None, "a live lease is left alone"


def test_claiming_a_missing_token_does_nothing():
    (job,) = due_jobs(1)
    assert not scan_job_release(job_id=job.pk, lock_token=uuid.uuid4(), outcome="succeeded")
