import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from budget.errors import BudgetExhausted
from budget.models import GptBudgetLock, GptUsageLog
from budget.selectors import budget_usage_counts
from budget.services import budget_admit
from tests.factories import GptUsageLogFactory, UserFactory


def admit(user, *, daily=48, hourly=6, **changes):
    fields = {"model": "gpt-4o-mini", "reason": "scan", "tokens_estimate": 800}
    return budget_admit(
        user_id=user.pk, daily_limit=daily, hourly_limit=hourly, **{**fields, **changes}
    )


@pytest.mark.django_db
def test_it_reserves_until_the_hourly_limit_then_refuses_with_a_logged_reason():
    user = UserFactory()
    admitted = [admit(user, hourly=3) for _ in range(3)]
    assert [u.status for u in admitted] == ["RESERVED"] * 3

    with pytest.raises(BudgetExhausted) as refused:
        admit(user, hourly=3)

    assert refused.value.code == "HOURLY_BUDGET_EXHAUSTED"
    assert refused.value.extra["used_this_hour"] == 3
    row = GptUsageLog.objects.get(pk=refused.value.extra["usage_id"])
    assert (row.status, row.error) == ("REFUSED", "HOURLY_BUDGET_EXHAUSTED")
    assert row.finished_at is not None


@pytest.mark.django_db
def test_the_daily_limit_wins_when_both_are_spent():
    user = UserFactory()
    admit(user, daily=1, hourly=1)
    with pytest.raises(BudgetExhausted) as refused:
        admit(user, daily=1, hourly=1)
    assert refused.value.code == "DAILY_BUDGET_EXHAUSTED"


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["RESERVED", "SUCCEEDED", "FAILED"])
def test_reserved_succeeded_and_failed_calls_count(status):
    user = UserFactory()
    GptUsageLogFactory(user=user, status=status, finished_at=datetime.now(UTC))
    with pytest.raises(BudgetExhausted):
        admit(user, hourly=1)


@pytest.mark.django_db
def test_refused_rows_count_for_nothing():
    user = UserFactory()
    GptUsageLogFactory.create_batch(5, user=user, status="REFUSED", finished_at=datetime.now(UTC))
    assert admit(user, hourly=1).status == "RESERVED"


@pytest.mark.django_db
def test_the_windows_are_the_last_hour_and_the_utc_day():
    user = UserFactory()
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    placed = [
        now - timedelta(minutes=59),  # this hour
        now - timedelta(minutes=61),  # today, not this hour
        now.replace(hour=0, minute=0),  # today, at midnight
        now.replace(hour=0, minute=0) - timedelta(seconds=1),  # yesterday
    ]
    for created_at in placed:
        row = GptUsageLogFactory(user=user, status="SUCCEEDED", finished_at=now)
        GptUsageLog.objects.filter(pk=row.pk).update(created_at=created_at)

    assert budget_usage_counts(user_id=user.pk, now=now) == (3, 1)


@pytest.mark.django_db
def test_calls_before_utc_midnight_do_not_count_today():
    user = UserFactory()
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0) - timedelta(seconds=1)
    rows = [admit(user, daily=2, hourly=10) for _ in range(2)]
    GptUsageLog.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=yesterday)
    assert admit(user, daily=2, hourly=10).status == "RESERVED"


@pytest.mark.django_db
def test_other_users_calls_do_not_count():
    alice, bob = UserFactory(), UserFactory()
    admit(alice, hourly=1)
    assert admit(bob, hourly=1).status == "RESERVED"


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_admissions_with_an_hourly_limit_of_five_admit_exactly_five():
    user = UserFactory()
    start = threading.Barrier(30)
    outcomes, errors = [], []

    def contend():
        try:
            start.wait()
            try:
                outcomes.append(admit(user, daily=100, hourly=5).status)
            except BudgetExhausted as refused:
                outcomes.append(refused.code)
        except Exception as error:  # surfaced below: a thread must not fail silently
            errors.append(error)
        finally:
            connection.close()  # each thread had its own connection

    threads = [threading.Thread(target=contend) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(outcomes).count("RESERVED") == 5
    assert sorted(outcomes).count("HOURLY_BUDGET_EXHAUSTED") == 25
    statuses = list(GptUsageLog.objects.filter(user=user).values_list("status", flat=True))
    assert sorted(statuses) == ["REFUSED"] * 25 + ["RESERVED"] * 5
    assert GptBudgetLock.objects.get(user=user).admissions == 30
