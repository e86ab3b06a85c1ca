import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import PolicyFactory, TradeProposalFactory
from trading.models import TradeExecution

pytestmark = pytest.mark.django_db


def test_execute_proposal_runs_once_and_says_so(exchange, capsys):
    proposal = TradeProposalFactory(user=PolicyFactory().user, approved=True)
    call_command("execute_proposal", str(proposal.pk))
    call_command("execute_proposal", str(proposal.pk))
    first, second = capsys.readouterr().out.strip().splitlines()
    execution = TradeExecution.objects.get()
    assert first.startswith(
        f"execution #{execution.pk} SUBMITTED order={execution.exchange_order_id}"
    )
    assert first.endswith("(new)") and second.endswith("(existing)")
    assert len(exchange.orders()) == 1


def test_execute_proposal_reports_refusals_and_unknown_ids(exchange):
    proposal = TradeProposalFactory(user=PolicyFactory(allowlist=[]).user, approved=True)
    with pytest.raises(CommandError, match="ALLOWLIST_EMPTY"):
        call_command("execute_proposal", str(proposal.pk))
    with pytest.raises(CommandError, match="PROPOSAL_NOT_FOUND"):
        call_command("execute_proposal", "999999")


def test_reconcile_executions_decides_a_lost_response(exchange, settings, capsys):
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    proposal = TradeProposalFactory(user=PolicyFactory().user, approved=True)
    exchange.control.inject("drop_after_commit")
    call_command("execute_proposal", str(proposal.pk))
    call_command("reconcile_executions")
    assert "submitted=1" in capsys.readouterr().out
    assert TradeExecution.objects.get().status == "SUBMITTED"
    call_command("reconcile_executions")
    assert "nothing to reconcile" in capsys.readouterr().out
