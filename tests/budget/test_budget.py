"""The LLM budget holds exactly, also when many scans ask at once."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from budget.errors import BudgetExhausted, UsageStateConflict
from budget.models import GptUsageLog
from budget.selectors import budget_usage_summary
from budget.services import budget_admit, budget_close, budget_reservations_abandon
from scheduler.advisors import LlmAdvisor
from tests.factories import GptUsageLogFactory, UserFactory
from tests.llm_server import llm_server

pytestmark = pytest.mark.django_db


def admit(user, daily=10, hourly=5):
    return budget_admit(
        user_id=user.pk,
        daily_limit=daily,
        hourly_limit=hourly,
        model="m",
        reason="scan",
        tokens_estimate=100,
    )


def test_a_call_within_the_limits_is_reserved_then_closed_once():
    user = UserFactory()
    usage = admit(user)
    assert usage.status == "RESERVED"
    budget_close(usage_id=usage.pk, status="SUCCEEDED", prompt_tokens=10, completion_tokens=2)
    with pytest.raises(UsageStateConflict):
        budget_close(usage_id=usage.pk, status="FAILED", prompt_tokens=None, completion_tokens=None)
    usage.refresh_from_db()
    assert (usage.status, usage.prompt_tokens, usage.completion_tokens) == ("SUCCEEDED", 10, 2)


def test_the_hourly_limit_refuses_with_its_code_and_records_the_refusal():
    user = UserFactory()
    for _ in range(2):
        admit(user, hourly=2)
    with pytest.raises(BudgetExhausted) as caught:
        admit(user, hourly=2)
    assert caught.value.code == "HOURLY_BUDGET_EXHAUSTED"
    refused = GptUsageLog.objects.get(status="REFUSED")
    assert refused.error == "HOURLY_BUDGET_EXHAUSTED"


def test_the_daily_limit_counts_failed_and_succeeded_calls_since_midnight():
    user = UserFactory()
    now = timezone.now()
    earlier_today = max(now.replace(hour=0, minute=0, second=1), now - timedelta(hours=2))
    for status in ("SUCCEEDED", "FAILED"):
        row = GptUsageLogFactory(user=user, status=status, finished_at=now)
        GptUsageLog.objects.filter(pk=row.pk).update(created_at=earlier_today)
    with pytest.raises(BudgetExhausted) as caught:
        admit(user, daily=2, hourly=5)
    assert caught.value.code == "DAILY_BUDGET_EXHAUSTED"


def test_refusals_do_not_count_and_other_users_are_separate():
    alice, bob = UserFactory(), UserFactory()
    admit(alice, hourly=1)
    for _ in range(3):
        with pytest.raises(BudgetExhausted):
            admit(alice, hourly=1)
    assert admit(bob, hourly=1).status == "RESERVED"
    GptUsageLog.objects.filter(user=alice, status="RESERVED").update(
        created_at=timezone.now() - timedelta(minutes=61)
    )
    assert admit(alice, hourly=1).status == "RESERVED", "an hour later there is room again"


def test_an_abandoned_reservation_is_closed_and_still_counts():
    user = UserFactory()
    usage = admit(user, hourly=1)
    GptUsageLog.objects.filter(pk=usage.pk).update(
        created_at=timezone.now() - timedelta(minutes=11)
    )
    assert budget_reservations_abandon() == 1
    usage.refresh_from_db()
    assert (usage.status, usage.error) == ("FAILED", "RESERVATION_ABANDONED")
    summary = budget_usage_summary(user_id=user.pk, daily_limit=3, hourly_limit=2)
    assert summary["hourly"] == {"limit": 2, "used": 1, "remaining": 1}


@pytest.mark.django_db(transaction=True)
def test_thirty_concurrent_admissions_let_exactly_five_calls_reach_the_llm(monkeypatch, settings):
    user = UserFactory()
    reply = {
        "trade": False,
        "market": "",
        "side": "buy",
        "amount_eur": "0",
        "confidence": 0,
        "rationale": "",
    }
    with llm_server(reply=reply, delay=0.05) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        settings.OPENAI_BASE_URL = server.url
        barrier = threading.Barrier(30)
        outcomes = []

        def scan():
            try:
                barrier.wait()
                try:
                    usage = admit(user, daily=100, hourly=5)
                except BudgetExhausted as refusal:
                    outcomes.append(refusal.code)
                    return
                advice = LlmAdvisor().advise({"markets": []})
                budget_close(
                    usage_id=usage.pk,
                    status="SUCCEEDED",
                    prompt_tokens=advice.prompt_tokens,
                    completion_tokens=advice.completion_tokens,
                )
                outcomes.append("called")
            finally:
                connection.close()

        threads = [threading.Thread(target=scan) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert server.calls == 5
    assert outcomes.count("called") == 5
    assert outcomes.count("HOURLY_BUDGET_EXHAUSTED") == 25
    assert GptUsageLog.objects.filter(status="SUCCEEDED", prompt_tokens=321).count() == 5
    assert GptUsageLog.objects.filter(status="REFUSED").count() == 25
