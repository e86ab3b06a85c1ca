from django.core.management.base import BaseCommand

from evaluation.scoring import proposals_score


class Command(BaseCommand):
    help = (
        "Scores every proposal whose 1, 4, 24 or 72 hour horizon has passed and that has no "
        "outcome for it yet, from public 1-minute candles. Safe to run twice at once."
    )

    def handle(self, *args, **options):
        run = proposals_score()
        self.stdout.write(
            f"written: {run.written}  already there: {run.already_there}  "
            f"waiting for a candle: {run.waiting}  candle reads: {run.reads}"
        )
        for error in run.errors:
            self.stderr.write(f"not read: {error}")
