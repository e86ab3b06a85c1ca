from django.core.management.base import BaseCommand, CommandError

from trading.models import TradeProposal
from trading.send import execution_run


class Command(BaseCommand):
    help = "Executes one approved proposal in the foreground, as idempotently as the task."

    def add_arguments(self, parser):
        parser.add_argument("proposal_id", type=int)

    def handle(self, *args, proposal_id, **options):
        proposal = TradeProposal.objects.filter(pk=proposal_id).first()
        if proposal is None:
            raise CommandError(f"PROPOSAL_NOT_FOUND: no proposal #{proposal_id}")
        outcome = execution_run(proposal=proposal)
        if outcome.refused:
            raise CommandError(f"REFUSED: {', '.join(outcome.refused_codes)}")
        execution = outcome.execution
        self.stdout.write(
            f"execution #{execution.pk} {execution.status}"
            f" order={execution.exchange_order_id or '-'}"
            f" error={execution.error_code or '-'}"
            f" {'(new)' if outcome.created else '(existing)'}"
        )
