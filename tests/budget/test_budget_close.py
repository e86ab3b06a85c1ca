from datetime import UTC, datetime, timedelta

import pytest

from budget.errors import BudgetError, BudgetExhausted, UsageStateConflict
from budget.models import GptUsageLog
from budget.services import budget_admit, budget_close, budget_reservations_abandon
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def reserve(user, hourly=6):
    return budget_admit(
        user_id=user.pk,
        daily_limit=48,
        hourly_limit=hourly,
        model="gpt-4o-mini",
        reason="scan",
        tokens_estimate=800,
    )


def test_it_closes_a_reservation_with_the_tokens_actually_used():
    usage = reserve(UserFactory())
    budget_close(usage_id=usage.pk, status="SUCCEEDED", prompt_tokens=321, completion_tokens=45)
    usage.refresh_from_db()
    assert (usage.status, usage.prompt_tokens, usage.completion_tokens) == ("SUCCEEDED", 321, 45)
    assert usage.finished_at is not None


def test_a_second_close_is_a_conflict_and_changes_nothing():
    usage = reserve(UserFactory())
    budget_close(
        usage_id=usage.pk,
        status="FAILED",
        prompt_tokens=None,
        completion_tokens=None,
        error="LLM_TIMEOUT: timed out",
    )
    with pytest.raises(UsageStateConflict) as conflict:
        budget_close(usage_id=usage.pk, status="SUCCEEDED", prompt_tokens=1, completion_tokens=1)
    assert conflict.value.code == "USAGE_NOT_RESERVED"
    usage.refresh_from_db()
    assert (usage.status, usage.error) == ("FAILED", "LLM_TIMEOUT: timed out")


def test_a_refused_row_cannot_be_closed():
    user = UserFactory()
    reserve(user, hourly=1)
    with pytest.raises(BudgetExhausted) as refused:
        reserve(user, hourly=1)
    with pytest.raises(UsageStateConflict):
        budget_close(
            usage_id=refused.value.extra["usage_id"],
            status="SUCCEEDED",
            prompt_tokens=1,
            completion_tokens=1,
        )


@pytest.mark.parametrize("status", ["RESERVED", "REFUSED", "DONE"])
def test_a_call_closes_only_as_succeeded_or_failed(status):
    usage = reserve(UserFactory())
    with pytest.raises(BudgetError) as invalid:
        budget_close(usage_id=usage.pk, status=status, prompt_tokens=1, completion_tokens=1)
    assert invalid.value.code == "USAGE_STATUS_INVALID"


def test_abandoned_reservations_are_failed_and_still_count():
    user = UserFactory()
    stale, fresh = reserve(user, hourly=3), reserve(user, hourly=3)
    GptUsageLog.objects.filter(pk=stale.pk).update(
        created_at=datetime.now(UTC) - timedelta(minutes=11)
    )

    assert budget_reservations_abandon() == 1

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, stale.error) == ("FAILED", "RESERVATION_ABANDONED")
    assert fresh.status == "RESERVED"
    # Both still count: a third call is the last one this hour.
    reserve(user, hourly=3)
    with pytest.raises(BudgetExhausted):
        reserve(user, hourly=3)
