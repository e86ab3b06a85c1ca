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
    login_verified,
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
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))
    add_rows(2)
    url = reverse(name)
    with_two = queries(client, url)
    add_rows(18)
    with django_assert_max_num_queries(with_two):
        client.get(url)


def _unbounded(sql: str) -> bool:
    """A count or a distinct with no LIMIT anywhere in it reads the whole table."""
    upper = sql.upper()
    return ("COUNT(" in upper or "SELECT DISTINCT" in upper) and "LIMIT" not in upper


@pytest.mark.parametrize("name", CHANGELISTS)
def test_a_changelist_never_counts_or_lists_distinct_values_over_the_whole_table(
    client, name, settings
):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))
    add_rows(3)
    with CaptureQueriesContext(connection) as captured:
        page = client.get(reverse(name))
    assert page.status_code == 200
    assert "total)" not in page.content.decode(), "no full result count"
    unbounded = [q["sql"] for q in captured if _unbounded(q["sql"])]
    assert unbounded == []


def test_the_capped_pager_stops_counting_at_its_cap(client, settings, monkeypatch):
    monkeypatch.setattr("core.admin.LIST_COUNT_CAP", 3)
    monkeypatch.setattr(admin.site._registry[ExchangeCall], "list_per_page", 2)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))
    for _ in range(5):
        ExchangeCall.objects.create(key_role="readonly", method="GET", path="/x", latency_ms=1)
    url = reverse("admin:exchange_exchangecall_changelist")

    first = client.get(url)
    assert first.context["cl"].result_count == 3
    assert first.context["cl"].paginator.num_pages == 2
    assert len(first.context["cl"].result_list) == 2
    last = client.get(url, {"p": 2})
    assert len(last.context["cl"].result_list) == 1  # the third row: where counting stopped
