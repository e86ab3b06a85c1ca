"""Every changelist of the product's admin runs a fixed number of queries, however many
rows it shows: no N+1 (a related object read per row)."""

import uuid

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from exchange.models import BalanceSnapshot, ExchangeCall
from tests.factories import (
    AdvisorDecisionFactory,
    GptUsageLogFactory,
    NotificationDeliveryFactory,
    NotificationSettingsFactory,
    PolicyFactory,
    PortfolioSnapshotFactory,
    ProposalEventFactory,
    ProposalOutcomeFactory,
    ScanJobFactory,
    TradeHistoryFactory,
    UserFactory,
)
from tests.isolation.personas import OUR_APPS
from trading.models import AccountFunds, AllocationChange

pytestmark = pytest.mark.django_db

CHANGELISTS = sorted(
    f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist"
    for m in admin.site._registry
    if m._meta.app_label in OUR_APPS
)


def add_rows(n: int) -> None:
    """n rows in every table, each of another user, with every relation filled."""
    for _ in range(n):
        history = TradeHistoryFactory()
        user = history.user
        PolicyFactory(user=user)
        ProposalEventFactory(proposal=history.execution.proposal, actor=user)
        job = ScanJobFactory(
            user=user,
            locked_by="w",
            lock_token=uuid.uuid4(),
            locked_at=timezone.now(),
            lock_expires_at=timezone.now(),
        )
        GptUsageLogFactory(user=user, status="RESERVED")
        proposal = history.execution.proposal
        AdvisorDecisionFactory(user=user, scan_job=job, proposal=proposal, decision="propose")
        ProposalOutcomeFactory(proposal=proposal)
        NotificationSettingsFactory(user=user)
        NotificationDeliveryFactory(user=user)
        PortfolioSnapshotFactory(user=user)
        ExchangeCall.objects.create(key_role="trade", method="POST", path="/order", latency_ms=1)
        BalanceSnapshot.objects.create(
            asset=uuid.uuid4().hex[:8], available=1, in_order=0, fetched_at=timezone.now()
        )
        AllocationChange.objects.create(user=user, actor=user, before_eur=0, after_eur=100)
        AccountFunds.objects.create(asset=uuid.uuid4().hex[:8], amount=1, updated_by=user)


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("name", CHANGELISTS)
def test_a_changelist_runs_the_same_queries_for_2_rows_and_for_20(
    client, name, django_assert_max_num_queries, settings
):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    add_rows(2)
    url = reverse(name)
    with_two = queries(client, url)
    add_rows(18)
    with django_assert_max_num_queries(with_two):
        client.get(url)
