from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from scheduler.services import scan_job_claim, scan_job_run, scan_owner


class Command(BaseCommand):
    help = (
        "Claims one scan job (if its lease is free) and runs one scan now, in the foreground, "
        "through the same lease and LLM budget as the workers."
    )

    def add_arguments(self, parser):
        parser.add_argument("job_id", type=int)

    def handle(self, *args, job_id, **options):
        try:
            token = scan_job_claim(job_id=job_id, owner=f"run_scan:{scan_owner()}")
        except DomainError as error:
            raise CommandError(str(error)) from None
        outcome = scan_job_run(job_id=job_id, lock_token=token)
        self.stdout.write(f"scan job #{job_id}: {outcome.status}")
        if outcome.detail:
            self.stdout.write(f"  detail: {outcome.detail}")
        if outcome.proposal_id:
            self.stdout.write(f"  proposal: #{outcome.proposal_id} (PENDING)")
        if outcome.usage_id:
            self.stdout.write(f"  budget row: #{outcome.usage_id}")
        if outcome.failed:
            raise CommandError(f"scan job #{job_id} failed: {outcome.detail}")
