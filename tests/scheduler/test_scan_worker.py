"""A scan on a real worker process, killed mid-call: acks_late redelivers the task, and the
single-use claim token keeps the redelivery from running the job a second time."""

import json
import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from budget.models import GptUsageLog
from budget.services import budget_reservations_abandon
from config.celery import app
from scheduler.models import ScanJob
from scheduler.services import (
    scan_jobs_claim_due,
    scan_jobs_dispatch_due,
    scan_jobs_release_expired,
)
from tests.factories import PolicyFactory, ScanJobFactory
from tests.scheduler.llm_server import Reply
from tests.workers import celery_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_scan_killed_mid_call_runs_once_and_its_lease_and_reservation_are_recovered(
    market_data, llm
):
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("scan")
    llm.default = Reply(content=json.dumps({"decision": "no_trade"}), delay=10)
    job = ScanJobFactory(user=PolicyFactory().user, markets=["BTC-EUR"])
    env = {
        "ORACLE_ROLE": "scan",
        "BITVAVO_API_URL": market_data.api_url,
        **market_data.readonly_env(),
        "BITVAVO_TRADE_KEY": "",
        "BITVAVO_TRADE_SECRET": "",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": llm.base_url,
    }

    with celery_worker(queue="scan", env=env, concurrency=1) as worker:
        assert scan_jobs_dispatch_due(owner="test-beat") == 1
        wait_for(lambda: llm.calls == 1, what="the LLM call to start")
        for pid in worker.children():
            os.kill(pid, signal.SIGKILL)  # the scan dies while the LLM "thinks"
        wait_for(lambda: "'status': 'LEASE_LOST'" in worker.log(), what="the redelivery")
        log = worker.log()

    assert "WorkerLostError" in log or "signal 9" in log
    assert llm.calls == 1, "the redelivered task ran the scan again"
    usage = GptUsageLog.objects.get()
    assert usage.status == "RESERVED"  # counted until closed
    job.refresh_from_db()
    assert job.lock_token is not None and job.last_started_at is not None

    # Time passes: the lease expires and the reservation times out.
    past = timezone.now() - timedelta(seconds=1)
    ScanJob.objects.filter(pk=job.pk).update(lock_expires_at=past, next_run_at=past)
    assert scan_jobs_release_expired() == 1
    assert budget_reservations_abandon(older_than=timedelta(0)) == 1

    usage.refresh_from_db()
    assert (usage.status, usage.error) == ("FAILED", "RESERVATION_ABANDONED")
    job.refresh_from_db()
    assert (job.last_error, job.consecutive_failures) == ("SCAN_LEASE_EXPIRED", 1)
    assert [pk for pk, _ in scan_jobs_claim_due(owner="next-beat", limit=5)] == [job.pk]
