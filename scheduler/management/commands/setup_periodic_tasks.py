"""Every periodic task, in one place. Entries are upserted by name, never wiped, so a
redeploy keeps their history (last_run_at) and cannot race a running beat."""

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

PERIODIC_TASKS = [
    # (name, task, every N seconds)
    ("Dispatch due scans", "scheduler.tasks.dispatch_due_scans", 30),
    ("Release expired scan leases", "scheduler.tasks.release_expired_locks", 60),
    ("Close abandoned LLM reservations", "budget.tasks.close_abandoned_reservations", 300),
    ("Refresh exchange balances", "exchange.tasks.refresh_balances", 60),
    ("Expire proposals", "trading.tasks.expire_proposals", 60),
    ("Reconcile submitting executions", "trading.tasks.reconcile_submitting_executions", 60),
]


class Command(BaseCommand):
    help = "Creates or updates the beat schedule (by name; nothing is deleted)."

    @transaction.atomic
    def handle(self, *args, **options):
        for name, task, seconds in PERIODIC_TASKS:
            schedule, _ = IntervalSchedule.objects.get_or_create(
                every=seconds, period=IntervalSchedule.SECONDS
            )
            _, created = PeriodicTask.objects.update_or_create(
                name=name, defaults={"task": task, "interval": schedule, "enabled": True}
            )
            self.stdout.write(f"{'created' if created else 'updated'}: {name} every {seconds}s")
