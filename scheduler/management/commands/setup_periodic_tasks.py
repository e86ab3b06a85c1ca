"""Every periodic task, in one place. Entries are upserted by name, never wiped, so a
redeploy keeps their history (last_run_at, run counts) and cannot race a running beat.
An entry an operator disabled stays disabled."""

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

PERIODIC_TASKS = [
    # (name, task, every N seconds)
    # Claims due scan jobs (SKIP LOCKED leases) and queues one scan per claim.
    ("scheduler: dispatch due scans", "scheduler.tasks.dispatch_due_scans", 30),
    # Frees leases of crashed or overrunning workers and counts them.
    ("scheduler: release expired scan leases", "scheduler.tasks.release_expired_locks", 60),
    # LLM reservations a dead worker left open are closed as FAILED (still counted).
    ("budget: close abandoned reservations", "budget.tasks.close_abandoned_reservations", 300),
    # Balances read with the read-only key; the execute worker rechecks against this snapshot.
    ("exchange: refresh balances", "exchange.tasks.refresh_balances", 60),
    # PENDING/APPROVED proposals past their expiry become EXPIRED.
    ("trading: expire proposals", "trading.tasks.expire_proposals", 60),
    # SUBMITTING executions are looked up on the exchange until their outcome is known.
    (
        "trading: reconcile submitting executions",
        "trading.tasks.reconcile_submitting_executions",
        60,
    ),
    # Proposals whose 1/4/24/72 h horizon passed are scored from public candles.
    ("evaluation: score proposals", "evaluation.tasks.score_proposals", 300),
    # Today's portfolio value per user; the day's row is replaced, so it ends as its close.
    ("portfolio: snapshot values", "portfolio.tasks.snapshot_portfolios", 3600),
    # High-volume logs past their retention (RETENTION_*), deleted in short batches.
    ("ops: prune logs past retention", "ops.tasks.prune_logs", 600),
]

DAILY_TASKS = [
    # (name, task, UTC hour, minute)
    # Yesterday's trades and profit to every user who wants it: also the heartbeat.
    ("portfolio: daily summary", "portfolio.tasks.send_daily_summaries", 0, 5),
]


class Command(BaseCommand):
    help = "Creates or updates the beat schedule by name; nothing is deleted."

    @transaction.atomic
    def handle(self, *args, **options):
        for name, task, seconds in PERIODIC_TASKS:
            schedule, _ = IntervalSchedule.objects.get_or_create(
                every=seconds, period=IntervalSchedule.SECONDS
            )
            _, created = PeriodicTask.objects.update_or_create(
                name=name,
                defaults={"task": task, "interval": schedule},
                create_defaults={"task": task, "interval": schedule, "enabled": True},
            )
            self.stdout.write(f"{'created' if created else 'updated'}: {name} every {seconds}s")
        for name, task, hour, minute in DAILY_TASKS:
            schedule, _ = CrontabSchedule.objects.get_or_create(
                minute=str(minute),
                hour=str(hour),
                day_of_week="*",
                day_of_month="*",
                month_of_year="*",
                timezone="UTC",
            )
            _, created = PeriodicTask.objects.update_or_create(
                name=name,
                defaults={"task": task, "crontab": schedule, "interval": None},
                create_defaults={"task": task, "crontab": schedule, "enabled": True},
            )
            self.stdout.write(
                f"{'created' if created else 'updated'}: {name} daily at {hour:02}:{minute:02} UTC"
            )
