from datetime import UTC, datetime, timedelta

import pytest

from budget.models import GptUsageLog
from budget.selectors import budget_usage_summary
from tests.factories import GptUsageLogFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_it_sums_the_last_24_hours_by_reason_and_model_with_what_is_left():
    user, other = UserFactory(), UserFactory()
    now = datetime.now(UTC)
    done = {"finished_at": now}
    GptUsageLogFactory(
        user=user, status="SUCCEEDED", prompt_tokens=300, completion_tokens=40, **done
    )
    GptUsageLogFactory(user=user, status="FAILED", prompt_tokens=100, completion_tokens=5, **done)
    GptUsageLogFactory(user=user, status="REFUSED", error="HOURLY_BUDGET_EXHAUSTED", **done)
    GptUsageLogFactory(user=user, status="RESERVED", model="offline-momentum-v1", tokens_estimate=0)
    GptUsageLogFactory(user=other, status="SUCCEEDED", prompt_tokens=999, **done)
    old = GptUsageLogFactory(user=user, status="SUCCEEDED", prompt_tokens=777, **done)
    GptUsageLog.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=25))

    summary = budget_usage_summary(user_id=user.pk, daily_limit=10, hourly_limit=3, now=now)

    assert summary["by_reason_and_model"] == [
        {
            "reason": "scan",
            "model": "gpt-4o-mini",
            "calls": 2,
            "succeeded": 1,
            "failed": 1,
            "reserved": 0,
            "refused": 1,
            "prompt_tokens": 400,
            "completion_tokens": 45,
            "tokens_estimate": 1600,
        },
        {
            "reason": "scan",
            "model": "offline-momentum-v1",
            "calls": 1,
            "succeeded": 0,
            "failed": 0,
            "reserved": 1,
            "refused": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "tokens_estimate": 0,
        },
    ]
    assert summary["hourly"] == {"limit": 3, "used": 3, "remaining": 0}
    assert summary["daily"] == {"limit": 10, "used": 3, "remaining": 7}


def test_the_ledger_is_browsable_and_read_only_in_the_admin(admin_client):
    usage = GptUsageLogFactory(
        status="REFUSED", error="DAILY_BUDGET_EXHAUSTED", finished_at=datetime.now(UTC)
    )
    listing = admin_client.get("/admin/budget/gptusagelog/")
    assert listing.status_code == 200 and b"DAILY_BUDGET_EXHAUSTED" in listing.content
    assert admin_client.get("/admin/budget/gptusagelog/add/").status_code == 403
    admin_client.post(f"/admin/budget/gptusagelog/{usage.pk}/delete/", {"post": "yes"})
    assert GptUsageLog.objects.filter(pk=usage.pk).exists()
