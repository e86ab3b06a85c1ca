"""The daily summary: queued for every user who wants it (also on a quiet day: it is the
heartbeat), delivered through the existing channels with the day's figures."""

from datetime import UTC, datetime, timedelta

import pytest

from budget.models import GptUsageLog
from notifications.services import notification_deliver, notification_settings_update
from portfolio.services import daily_summaries_send
from tests.factories import GptUsageLogFactory, PolicyFactory, TradeProposalFactory, UserFactory
from tests.notifications.test_notifications import handle, verify
from tests.portfolio.test_positions_api import T0, alices_fills

pytestmark = pytest.mark.django_db(transaction=True)

# Just after midnight: the summary is of 2026-03-02, the day of alice's fills.
NOW = datetime(2026, 3, 3, 0, 5, tzinfo=UTC)


def test_the_summary_of_yesterday_reaches_the_webhook_signed(
    notify_queue, notify_settings, webhook, priced
):
    alice = PolicyFactory(user=UserFactory(username="alice"), gpt_daily_limit=20).user
    alices_fills(alice)
    TradeProposalFactory(user=alice)
    TradeProposalFactory(user=alice, approved=True)  # not pending
    GptUsageLogFactory(user=alice, status="SUCCEEDED", finished_at=NOW - timedelta(hours=2))
    GptUsageLog.objects.update(created_at=NOW - timedelta(hours=2))
    row = notification_settings_update(user=alice, webhook_url=webhook.url)
    assert "daily_summary" in row.events  # new users get every event

    assert daily_summaries_send(now=NOW) == 1
    [delivery] = handle(notify_queue.taken())
    assert notification_deliver(delivery_id=delivery.pk) is None

    [request] = webhook.requests
    assert request.headers["X-Oracle-Event"] == "daily_summary"
    body = verify(request, row.webhook_secret)
    summary = body["data"]
    assert summary["day"] == "2026-03-02"
    assert summary["trades"] == {
        "fills": 5,
        "buys": 3,
        "sells": 2,
        "bought_eur": "3300.00",  # 500 + 800 + 2000
        "sold_eur": "2150.00",  # 900 + 1250
        "fees_eur": "10.63",
    }
    # Everything happened that day: realised 491.998999 and the total since it began,
    # 863.975 (nothing before it).
    assert summary["pnl"]["realized_eur"] == "492.00"
    assert summary["pnl"]["since_day_start_eur"] == "863.98"
    assert summary["portfolio"]["value_eur"] == "2022.60"
    assert summary["proposals_pending"] == 1
    assert summary["budget"] == {"llm_calls_last_24h": 1, "used_today": 0, "daily_limit": 20}
    assert summary["url"] == "https://console.example/admin/portfolio/"
    assert body["subject"] == (
        "Daily summary 2026-03-02: 5 trades, PnL 863.98 EUR, 1 proposals pending"
    )
    # Sent once a day: the same day again creates no second delivery.
    daily_summaries_send(now=NOW + timedelta(minutes=1))
    assert handle(notify_queue.taken()) == []


def test_a_quiet_day_still_sends_the_heartbeat_and_only_to_who_wants_it(
    notify_queue, notify_settings, webhook, exchange
):
    quiet = UserFactory(username="quiet")
    notification_settings_update(user=quiet, email="quiet@example.com")
    opted_out = UserFactory(username="opted-out")
    notification_settings_update(
        user=opted_out, email="out@example.com", events=["proposal_pending"]
    )
    UserFactory(username="no-settings")

    assert daily_summaries_send(now=NOW) == 1
    [delivery] = handle(notify_queue.taken())

    assert (delivery.user, delivery.channel, delivery.event) == (quiet, "email", "daily_summary")
    assert delivery.payload["data"]["trades"]["fills"] == 0
    assert delivery.payload["data"]["pnl"]["since_day_start_eur"] == "0.00"
    assert delivery.subject.startswith("Daily summary 2026-03-02: 0 trades")


def test_the_summary_covers_only_its_day(notify_queue, notify_settings, webhook, priced):
    alice = UserFactory(username="alice")
    alices_fills(alice)
    notification_settings_update(user=alice, webhook_url=webhook.url)

    daily_summaries_send(now=T0 + timedelta(days=2))  # the summary of 2026-03-03
    [delivery] = handle(notify_queue.taken())

    summary = delivery.payload["data"]
    assert summary["trades"]["fills"] == 0 and summary["pnl"]["realized_eur"] == "0.00"
    # Fills before that day and no snapshot: the day's profit is unknown, and says why.
    assert summary["pnl"]["since_day_start_eur"] is None
    assert summary["pnl"]["since_day_start_reason"].startswith("NO_SNAPSHOT")
    assert "PnL unknown" in delivery.subject
