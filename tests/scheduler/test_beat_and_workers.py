"""Beat and scan workers as real processes on real Redis: any number of them may run."""

from collections import Counter

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from evaluation.models import AdvisorDecision
from scheduler.models import ScanJob
from tests.factories import PolicyFactory, ScanJobFactory
from tests.workers import celery_beat, celery_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NO_KEYS = {"BITVAVO_TRADE_KEY": "", "BITVAVO_TRADE_SECRET": "", "OPENAI_API_KEY": ""}


def test_setup_periodic_tasks_upserts_by_name_and_keeps_history(capsys):
    call_command("setup_periodic_tasks")
    dispatch = PeriodicTask.objects.get(task="scheduler.tasks.dispatch_due_scans")
    assert (dispatch.interval.every, dispatch.interval.period) == (30, "seconds")
    expire = PeriodicTask.objects.get(task="trading.tasks.expire_proposals")
    PeriodicTask.objects.filter(pk=dispatch.pk).update(total_run_count=7)
    PeriodicTask.objects.filter(pk=expire.pk).update(enabled=False)  # an operator's choice

    call_command("setup_periodic_tasks")

    dispatch.refresh_from_db()
    expire.refresh_from_db()
    assert dispatch.total_run_count == 7, "the upsert kept the entry's history"
    assert expire.enabled is False, "the upsert kept the operator's switch"
    assert set(PeriodicTask.objects.values_list("task", flat=True)) >= {
        "scheduler.tasks.dispatch_due_scans",
        "scheduler.tasks.release_expired_locks",
        "budget.tasks.close_abandoned_reservations",
        "trading.tasks.expire_proposals",
        "trading.tasks.reconcile_submitting_executions",
        "evaluation.tasks.score_proposals",
        "ops.tasks.prune_logs",
    }
    assert PeriodicTask.objects.count() == 10
    assert "updated: scheduler: dispatch due scans every 30s" in capsys.readouterr().out


def test_two_beats_and_two_workers_run_each_job_once_per_interval(market_data):
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("scan")
    call_command("setup_periodic_tasks")
    PeriodicTask.objects.exclude(task="scheduler.tasks.dispatch_due_scans").update(enabled=False)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.filter(task="scheduler.tasks.dispatch_due_scans").update(
        interval=every_second
    )
    policy = PolicyFactory(gpt_hourly_limit=1000, gpt_daily_limit=1000)
    jobs = [ScanJobFactory(user=policy.user, interval_minutes=60) for _ in range(8)]
    scan_env = {
        **NO_KEYS,
        "ORACLE_ROLE": "scan",
        "BITVAVO_API_URL": market_data.api_url,
        **market_data.readonly_env(),
    }
    beat_env = {**NO_KEYS, "ORACLE_ROLE": "beat"}

    def runs():
        # One decision per scan (the jobs read the same markets, so most are `unchanged`).
        return Counter(AdvisorDecision.objects.values_list("scan_job_id", flat=True))

    def dispatches(beat):
        return beat.log().count("scheduler.tasks.dispatch_due_scans")

    with (
        celery_worker(queue="scan", env=scan_env, name="a") as worker_a,
        celery_worker(queue="scan", env=scan_env, name="b") as worker_b,
        celery_beat(env=beat_env, name="a") as beat_a,
        celery_beat(env=beat_env, name="b") as beat_b,
    ):
        for interval in (1, 2, 3):
            wait_for(
                lambda n=interval: (
                    runs() == Counter({job.pk: n for job in jobs})
                    and not ScanJob.objects.filter(lock_token__isnull=False).exists()
                ),
                timeout=60,
                what=f"interval {interval}: every job run and released",
            )
            sent = dispatches(beat_a), dispatches(beat_b)
            wait_for(
                lambda sent=sent: (
                    dispatches(beat_a) >= sent[0] + 4 and dispatches(beat_b) >= sent[1] + 4
                ),
                timeout=60,
                what="four more dispatches from each beat",
            )
            assert runs() == Counter({job.pk: interval for job in jobs}), "a job ran twice"
            # The interval passes (it is an hour; the test does not wait for it).
            ScanJob.objects.update(next_run_at=timezone.now())
        logs = {"worker a": worker_a.log(), "worker b": worker_b.log()}
        logs |= {"beat a": beat_a.log(), "beat b": beat_b.log()}

    for name in ("beat a", "beat b"):
        assert logs[name].count("scheduler.tasks.dispatch_due_scans") >= 10, name
    RAN_STATUSES = ("PROPOSED", "NO_TRADE", "DUPLICATE", "UNCHANGED")
    finished = [
        # A job whose advice is already pending (DUPLICATE) or whose market did not move
        # (UNCHANGED) stores nothing new: it still ran.
        sum(log.count(f"'status': '{status}'") for status in RAN_STATUSES)
        for name, log in logs.items()
        if name.startswith("worker")
    ]
    assert sum(finished) == 3 * len(jobs)
    assert all(finished), "both workers took scans"
    assert not any("Traceback" in log for log in logs.values())
