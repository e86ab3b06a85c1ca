from django.core.management.base import BaseCommand, CommandError

from scheduler.models import ScanJob
from scheduler.pipeline import scan_job_run
from scheduler.services import scan_job_claim


class Command(BaseCommand):
    help = "Claims one scan job (if its lease is free) and runs it now, in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("job_id", type=int)

    def handle(self, *args, job_id, **options):
        if not ScanJob.objects.filter(pk=job_id).exists():
            raise CommandError(f"SCAN_JOB_NOT_FOUND: no scan job #{job_id}")
        token = scan_job_claim(job_id=job_id)
        if token is None:
            raise CommandError(f"SCAN_JOB_LOCKED: scan job #{job_id} is held by another worker")
        outcome = scan_job_run(job_id=job_id, lock_token=token)
        self.stdout.write(f"scan job #{job_id}: {outcome}")
        if outcome.status == "failed":
            raise CommandError(outcome.detail)
