"""Retention on PostgreSQL: old high-volume log rows go, in batches; money records never do."""

from datetime import timedelta

import pytest
from django.utils import timezone

from budget.models import GptUsageLog
from evaluation.models import AdvisorDecision
from exchange.models import ExchangeCall
from notifications.models import NotificationDelivery
from ops.retention import logs_prune
from tests.factories import (
    AdvisorDecisionFactory,
    GptUsageLogFactory,
    NotificationDeliveryFactory,
    ProposalEventFactory,
    TradeHistoryFactory,
    TradeProposalFactory,
)
from trading.models import ProposalEvent, TradeExecution, TradeHistory, TradeProposal

pytestmark = pytest.mark.django_db


def _aged(row, days: float, *fields: str):
    """Moves a row's timestamps `days` into the past (auto_now_add cannot be set on create)."""
    when = timezone.now() - timedelta(days=days)
    type(row).objects.filter(pk=row.pk).update(**{field: when for field in fields})
    return row


def _call(days: float, *, key_role="readonly", client_order_id=None, path="/v2/ticker/24h"):
    call = ExchangeCall.objects.create(
        key_role=key_role,
        method="GET",
        path=path,
        status_code=200,
        latency_ms=12,
        client_order_id=client_order_id,
    )
    return _aged(call, days, "created_at")


@pytest.fixture
def retention(settings):
    settings.RETENTION_MARKET_DATA_CALLS_DAYS = 7
    settings.RETENTION_LLM_USAGE_DAYS = 90
    settings.RETENTION_DECISIONS_DAYS = 30
    settings.RETENTION_DELIVERED_NOTIFICATIONS_DAYS = 30
    settings.RETENTION_BATCH = 2
    return settings


def test_each_log_loses_only_its_rows_past_retention(retention):
    old_market = [_call(8) for _ in range(5)]
    fresh_market = _call(6)
    old_order_calls = [
        _call(400, key_role="trade", path="/v2/order"),
        _call(400, client_order_id="9b2a4c1e-0000-4000-8000-000000000001", path="/v2/order"),
    ]
    old_usage = [
        _aged(GptUsageLogFactory(status="SUCCEEDED", finished_at=timezone.now()), 91, "created_at")
        for _ in range(3)
    ]
    open_reservation = _aged(GptUsageLogFactory(status="RESERVED"), 91, "created_at")
    fresh_usage = _aged(
        GptUsageLogFactory(status="SUCCEEDED", finished_at=timezone.now()), 89, "created_at"
    )
    old_decision = _aged(AdvisorDecisionFactory(), 31, "created_at")
    proposal = TradeProposalFactory()
    decision_with_proposal = _aged(
        AdvisorDecisionFactory(user=proposal.user, proposal=proposal, decision="propose"),
        400,
        "created_at",
    )
    fresh_decision = _aged(AdvisorDecisionFactory(), 29, "created_at")
    delivered = _aged(
        NotificationDeliveryFactory(status="DELIVERED", finished_at=timezone.now()),
        31,
        "created_at",
        "finished_at",
    )
    failed = _aged(
        NotificationDeliveryFactory(status="FAILED", finished_at=timezone.now()),
        400,
        "created_at",
        "finished_at",
    )
    # What proves where money went, all of it far older than any retention.
    history = TradeHistoryFactory()
    ProposalEventFactory(proposal=history.execution.proposal)
    for model, field in (
        (TradeProposal, "created_at"),
        (ProposalEvent, "created_at"),
        (TradeExecution, "claimed_at"),
        (TradeHistory, "executed_at"),
    ):
        model.objects.update(**{field: timezone.now() - timedelta(days=4000)})
    kept = {
        model: model.objects.count()
        for model in (TradeProposal, ProposalEvent, TradeExecution, TradeHistory)
    }

    deleted = logs_prune()

    assert deleted == {
        "market_data_calls": 5,
        "llm_usage": 3,
        "decisions": 1,
        "delivered_notifications": 1,
    }
    assert set(ExchangeCall.objects.values_list("pk", flat=True)) == {
        fresh_market.pk,
        *(call.pk for call in old_order_calls),
    }
    assert not ExchangeCall.objects.filter(pk__in=[c.pk for c in old_market]).exists()
    assert set(GptUsageLog.objects.values_list("pk", flat=True)) == {
        open_reservation.pk,
        fresh_usage.pk,
    }
    assert not GptUsageLog.objects.filter(pk__in=[u.pk for u in old_usage]).exists()
    assert set(AdvisorDecision.objects.values_list("pk", flat=True)) == {
        decision_with_proposal.pk,
        fresh_decision.pk,
    }
    assert not AdvisorDecision.objects.filter(pk=old_decision.pk).exists()
    assert list(NotificationDelivery.objects.values_list("pk", flat=True)) == [failed.pk]
    assert not NotificationDelivery.objects.filter(pk=delivered.pk).exists()
    assert {model: model.objects.count() for model in kept} == kept
    assert logs_prune() == dict.fromkeys(deleted, 0), "a second run finds nothing left"


def test_a_run_deletes_in_batches_and_stops_after_its_batch_budget(retention):
    for _ in range(7):
        _call(10)

    assert logs_prune(max_batches=2)["market_data_calls"] == 4  # two batches of 2
    assert ExchangeCall.objects.count() == 3
    assert logs_prune()["market_data_calls"] == 3  # the next run goes on
    assert ExchangeCall.objects.count() == 0


def test_retention_below_the_floor_keeps_what_budgets_and_scoring_still_read(retention):
    retention.RETENTION_LLM_USAGE_DAYS = 0
    retention.RETENTION_DECISIONS_DAYS = 0
    usage = _aged(
        GptUsageLogFactory(status="SUCCEEDED", finished_at=timezone.now()), 1.5, "created_at"
    )
    decision = _aged(AdvisorDecisionFactory(), 3.5, "created_at")  # a 72 h horizon may be open

    deleted = logs_prune()

    assert deleted["llm_usage"] == 0 and deleted["decisions"] == 0
    assert GptUsageLog.objects.filter(pk=usage.pk).exists()
    assert AdvisorDecision.objects.filter(pk=decision.pk).exists()
