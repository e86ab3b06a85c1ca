from django.core.management.base import BaseCommand

from trading.reconcile import executions_reconcile


class Command(BaseCommand):
    help = "Decides SUBMITTING executions by looking their orders up; never places an order."

    def handle(self, *args, **options):
        counts = executions_reconcile()
        summary = ", ".join(f"{name}={count}" for name, count in sorted(counts.items()))
        self.stdout.write(summary or "nothing to reconcile")
