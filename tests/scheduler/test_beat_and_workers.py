"""Two beats and two scan workers at once, as real processes: each job runs once."""

import time
from collections import Counter

import pytest
from django.core.management import call_command
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from budget.models import GptUsageLog
from config.celery import app
from scheduler.models import ScanJob
from tests.celery_workers import celery_beat, celery_worker
from tests.factories import PolicyFactory, ScanJobFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_setup_periodic_tasks_upserts_without_wiping(capsys):
    call_command("setup_periodic_tasks")
    task = PeriodicTask.objects.get(name="Dispatch due scans")
    PeriodicTask.objects.filter(pk=task.pk).update(total_run_count=7)
    call_command("setup_periodic_tasks")
    task.refresh_from_db()
    assert task.total_run_count == 7, "a second run keeps the entry's history"
    names = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {
        "scheduler.tasks.dispatch_due_scans",
        "trading.tasks.reconcile_submitting_executions",
        "trading.tasks.expire_proposals",
    } <= names
    assert "updated: Dispatch due scans every 30s" in capsys.readouterr().out


def test_two_beats_and_two_workers_run_each_job_once_per_interval(exchange):
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("scan")
    call_command("setup_periodic_tasks")
    PeriodicTask.objects.exclude(task="scheduler.tasks.dispatch_due_scans").update(enabled=False)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.filter(task="scheduler.tasks.dispatch_due_scans").update(
        interval=every_second
    )
    policy = PolicyFactory(gpt_hourly_limit=100, gpt_daily_limit=100)
    jobs = [
        ScanJobFactory(user=policy.user, markets=["BTC-EUR", "ETH-EUR"], interval_minutes=60)
        for _ in range(12)
    ]
    env = {
        "ORACLE_ROLE": "scan",
        "BITVAVO_API_URL": exchange.api_url,
        **exchange.server.readonly_env(),
        "BITVAVO_TRADE_KEY": "",
        "BITVAVO_TRADE_SECRET": "",
        "OPENAI_API_KEY": "",
    }

    with (
        celery_worker(queue="scan", env=env) as worker_a,
        celery_worker(queue="scan", env=env) as worker_b,
        celery_beat(env={"ORACLE_ROLE": "beat"}, name="a") as beat_a,
        celery_beat(env={"ORACLE_ROLE": "beat"}, name="b") as beat_b,
    ):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            connection.close()
            if ScanJob.objects.filter(last_finished_at__isnull=False).count() == len(jobs):
                break
            time.sleep(0.5)
        time.sleep(8)  # several more dispatch cycles from both beats
        logs = [w.log() for w in (worker_a, worker_b, beat_a, beat_b)]

    assert "Sending due task" in logs[2] and "Sending due task" in logs[3], "both beats fired"
    runs = Counter(GptUsageLog.objects.values_list("scan_job_id", flat=True))
    assert runs == Counter({job.pk: 1 for job in jobs}), "every job ran exactly once"
    scans_done = sum(log.count("scheduler.tasks.run_scan_job") for log in logs[:2])
    assert scans_done >= len(jobs)
