"""The database itself refuses what must never be stored, whatever the code above it does."""

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from scheduler.models import ScanJob
from tests.factories import (
    PolicyFactory,
    ScanJobFactory,
    TradeExecutionFactory,
    TradeProposalFactory,
    UserFactory,
)
from trading.models import EmergencyStop, Policy, TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db


def constraint_violated(name):
    return pytest.raises(IntegrityError, match=name)


def test_it_refuses_a_second_execution_for_the_same_proposal():
    first = TradeExecutionFactory()
    with constraint_violated("trade_executions_one_per_proposal"):
        TradeExecutionFactory(proposal=first.proposal, client_order_id=uuid.uuid4())


def test_it_refuses_a_reused_client_order_id():
    first = TradeExecutionFactory()
    with pytest.raises(IntegrityError, match="client_order_id"):
        TradeExecutionFactory(client_order_id=first.client_order_id)


@pytest.mark.parametrize("confidence", [30, 1, 99, 101])
def test_it_refuses_a_confidence_outside_the_levels(confidence):
    with constraint_violated("trade_proposals_confidence_level"):
        TradeProposalFactory(confidence=confidence)


def test_it_accepts_every_confidence_level():
    for confidence in (0, 25, 50, 75, 100):
        TradeProposalFactory(confidence=confidence)
    assert TradeProposal.objects.count() == 5


def test_it_refuses_a_policy_whose_minimum_exceeds_its_maximum():
    with constraint_violated("trading_policies_min_not_above_max"):
        PolicyFactory(min_order_eur=Decimal("200"), max_order_eur=Decimal("100"))


def test_it_refuses_a_policy_with_a_zero_minimum_order():
    with constraint_violated("trading_policies_min_order_positive"):
        PolicyFactory(min_order_eur=Decimal("0"))


def test_it_refuses_negative_limits():
    # Limits are unsigned columns: PostgreSQL checks "limit >= 0" itself.
    with pytest.raises(IntegrityError, match="max_trades_per_hour"):
        PolicyFactory(max_trades_per_hour=-1)


def test_it_refuses_an_unknown_proposal_status():
    proposal = TradeProposalFactory()
    with constraint_violated("trade_proposals_status_valid"):
        TradeProposal.objects.filter(pk=proposal.pk).update(status="LAUNCHED")


def test_it_refuses_an_unknown_execution_status():
    execution = TradeExecutionFactory()
    with constraint_violated("trade_executions_status_valid"):
        TradeExecution.objects.filter(pk=execution.pk).update(status="DONE")


def test_it_refuses_a_submitted_execution_without_an_exchange_order_id():
    execution = TradeExecutionFactory()
    with constraint_violated("trade_executions_submitted_has_order_id"):
        TradeExecution.objects.filter(pk=execution.pk).update(
            status="SUBMITTED", submitting_at=timezone.now()
        )


def test_it_refuses_a_failed_execution_without_an_error_code():
    execution = TradeExecutionFactory()
    with constraint_violated("trade_executions_failed_has_code"):
        TradeExecution.objects.filter(pk=execution.pk).update(
            status="FAILED", submitting_at=timezone.now()
        )


def test_it_refuses_an_override_without_reason_or_author():
    with constraint_violated("trade_proposals_override_recorded"):
        TradeProposalFactory(override_cooldown=True)


def test_it_accepts_a_recorded_override():
    staff = UserFactory()
    proposal = TradeProposalFactory(
        override_anti_flip=True,
        override_reason="Rebalancing after a deposit.",
        override_by=staff,
        override_at=timezone.now(),
    )
    assert proposal.override_anti_flip


def test_it_refuses_an_approved_proposal_without_a_decision_time():
    with constraint_violated("trade_proposals_decision_recorded"):
        TradeProposalFactory(status=TradeProposal.Status.APPROVED)


def test_it_refuses_a_half_held_scan_lease():
    job = ScanJobFactory()
    with constraint_violated("scan_jobs_lease_whole"):
        ScanJob.objects.filter(pk=job.pk).update(locked_by="worker-1")


def test_the_emergency_stop_row_exists_and_is_off():
    stop = EmergencyStop.objects.get()
    assert stop.pk == 1
    assert stop.active is False


def test_the_emergency_stop_is_a_single_row():
    with constraint_violated("trading_emergency_stop_singleton"):
        EmergencyStop.objects.create(id=2)


def test_a_new_policy_has_trading_disabled_and_an_empty_allowlist():
    policy = Policy.objects.create(user=UserFactory())
    assert policy.trading_enabled is False
    assert policy.allowlist == []


def test_full_clean_reports_the_stable_code():
    from django.core.exceptions import ValidationError

    proposal = TradeProposalFactory.build(user=UserFactory(), confidence=30)
    with pytest.raises(ValidationError) as caught:
        proposal.full_clean()
    assert "CONFIDENCE_INVALID" in {e.code for e in caught.value.error_dict["__all__"]}


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_inserts_for_one_proposal_give_one_execution():
    proposal = TradeProposalFactory(approved=True)
    barrier = threading.Barrier(8)
    outcomes = []

    def insert():
        try:
            barrier.wait()
            with transaction.atomic():
                TradeExecution.objects.create(
                    user=proposal.user,
                    proposal=proposal,
                    market=proposal.market,
                    side=proposal.side,
                    amount_eur=proposal.amount_eur,
                    policy_hash=proposal.policy_hash,
                    policy_snapshot=proposal.policy_snapshot,
                    claimed_at=timezone.now(),
                )
            outcomes.append("inserted")
        except IntegrityError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=insert) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["inserted"] + ["refused"] * 7
    assert TradeExecution.objects.filter(proposal=proposal).count() == 1
