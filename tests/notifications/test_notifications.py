"""Notifications in-process: what is published after commit, the deliveries an event makes, one
attempt at a time against a real local webhook receiver, e-mail through Django's locmem
backend, and the execution path's statement count with notifications configured.

The transactional database makes after-commit publishes real: they reach the test broker's
`notify` queue, which the tests read back (`queue_drain`).
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.errors import NotificationSettingsInvalid
from notifications.models import NotificationDelivery
from notifications.services import (
    notification_deliver,
    notification_event_handle,
    notification_settings_update,
)
from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory
from tests.webhook_server import WebhookServer
from tests.workers import child_env, queue_drain
from trading.models import TradeExecution
from trading.reconcile import executions_reconcile
from trading.send import execution_run
from trading.services import (
    emergency_stop_set,
    policy_trading_set,
    policy_update,
    proposal_create,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def notify_queue():
    """The notify queue, empty at the start; `.taken()` returns what was published since."""
    queue_drain("notify")

    class Queue:
        @staticmethod
        def taken():
            return queue_drain("notify")

    yield Queue
    queue_drain("notify")


@pytest.fixture
def webhook(settings):
    settings.NOTIFY_ALLOW_PRIVATE_WEBHOOKS = True  # the receiver is on 127.0.0.1
    server = WebhookServer().start()
    yield server
    server.stop()


@pytest.fixture
def notify_settings(settings):
    settings.CONSOLE_BASE_URL = "https://console.example"
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.NOTIFY_RETRY_BACKOFF_SECONDS = 10
    settings.NOTIFY_CONNECT_TIMEOUT = 1
    settings.NOTIFY_READ_TIMEOUT = 0.5
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFY_ALLOW_PRIVATE_WEBHOOKS = True
    return settings


def handle(taken) -> list[NotificationDelivery]:
    """Runs what the notify worker runs for each published event."""
    ids = []
    for task, args in taken:
        if task == "trading.tasks.notify_event":
            ids += notification_event_handle(event=args[0], facts=args[1])
    return list(NotificationDelivery.objects.filter(pk__in=ids).order_by("pk"))


def events(taken) -> list[tuple[str, dict]]:
    return [tuple(args) for task, args in taken if task == "trading.tasks.notify_event"]


def verify(request, secret: str) -> dict:
    """What a receiver does (README): recompute the signature over timestamp.body."""
    timestamp = request.headers["X-Oracle-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(request.headers["X-Oracle-Signature"], f"sha256={expected}")
    return json.loads(request.body)


# --- what is published, after commit -----------------------------------------------------------


def test_a_new_proposal_publishes_one_event_after_commit(notify_queue):
    user = PolicyFactory().user

    proposal = proposal_create(
        user=user, market="BTC-EUR", side="buy", amount_eur="25.00", confidence=75, source="api"
    )

    assert events(notify_queue.taken()) == [
        ("proposal_pending", {"user_id": user.pk, "proposal_id": proposal.pk})
    ]


def test_kill_switch_and_emergency_stop_publish_only_when_flipped(notify_queue):
    policy = PolicyFactory(trading_enabled=True)
    actor = UserFactory(username="operator")

    policy_trading_set(user=policy.user, enabled=True)  # no change
    policy_trading_set(user=policy.user, enabled=False, actor=actor)
    policy_update(user=policy.user, changes={"max_daily_trades": 9})  # no switch change
    policy_update(user=policy.user, changes={"trading_enabled": True})
    emergency_stop_set(active=True, actor=actor, reason="exchange incident")
    emergency_stop_set(active=True, actor=actor, reason="still on")  # no change

    published = events(notify_queue.taken())
    assert [
        (name, facts.get("trading_enabled", facts.get("active"))) for name, facts in published
    ] == [
        ("kill_switch", False),
        ("kill_switch", True),
        ("emergency_stop", True),
    ]
    assert published[0][1]["actor_id"] == actor.pk
    assert published[2][1]["user_id"] is None and published[2][1]["reason"] == "exchange incident"


def test_an_ended_execution_publishes_its_ids_only(notify_queue, exchange):
    proposal = TradeProposalFactory(user=PolicyFactory().user, approved=True)

    execution = execution_run(proposal=proposal).execution

    assert execution.status == "SUBMITTED"
    assert notify_queue.taken() == [
        (
            "trading.tasks.notify_event",
            ["execution_ended", {"user_id": proposal.user_id, "execution_id": execution.pk}],
        )
    ]


# --- deliveries of an event ---------------------------------------------------------------------


def test_a_signed_webhook_carries_the_proposal_and_its_console_link(
    notify_queue, notify_settings, webhook
):
    user = PolicyFactory().user
    row = notification_settings_update(user=user, webhook_url=webhook.url)
    proposal = proposal_create(
        user=user, market="ETH-EUR", side="sell", amount_eur="30.00", confidence=50, source="api"
    )

    [delivery] = handle(notify_queue.taken())
    assert notification_deliver(delivery_id=delivery.pk) is None

    [request] = webhook.requests
    assert request.path == "/hooks/oracle"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Oracle-Event"] == "proposal_pending"
    assert request.headers["X-Oracle-Delivery"] == str(delivery.pk)
    body = verify(request, row.webhook_secret)
    assert body["event"] == "proposal_pending" and body["user_id"] == user.pk
    assert body["data"]["proposal"]["id"] == proposal.pk
    assert body["data"]["proposal"]["amount_eur"] == "30.00"
    assert body["data"]["url"] == (
        f"https://console.example/admin/trading/tradeproposal/{proposal.pk}/change/"
    )
    # Another secret does not verify: the signature is the user's own.
    with pytest.raises(AssertionError):
        verify(request, "0" * 64)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("DELIVERED", 1)
    assert delivery.attempts[0]["outcome"] == "delivered"
    assert delivery.attempts[0]["status_code"] == 200


def test_a_500_is_retried_with_back_off_and_every_attempt_recorded(
    notify_queue, notify_settings, webhook
):
    user = PolicyFactory().user
    notification_settings_update(user=user, webhook_url=webhook.url)
    webhook.script(500, 500)
    proposal_create(
        user=user, market="BTC-EUR", side="buy", amount_eur="25.00", confidence=75, source="api"
    )
    [delivery] = handle(notify_queue.taken())

    delays = [notification_deliver(delivery_id=delivery.pk) for _ in range(3)]

    assert delays == [10, 20, None]  # BACKOFF * 2**(n-1), then delivered
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("DELIVERED", 3)
    assert [(a["outcome"], a["status_code"]) for a in delivery.attempts] == [
        ("failed", 500),
        ("failed", 500),
        ("delivered", 200),
    ]
    assert delivery.attempts[0]["error"].startswith("HTTP 500")
    # The same body every time; only the timestamp (and so the signature) is new.
    assert len({r.body for r in webhook.requests}) == 1
    # Finished: a duplicate task does nothing.
    assert notification_deliver(delivery_id=delivery.pk) is None
    assert len(webhook.requests) == 3


def test_a_receiver_that_never_answers_fails_after_the_limit(notify_queue, notify_settings):
    hanging = WebhookServer(hang=True).start()
    try:
        user = PolicyFactory().user
        notification_settings_update(user=user, webhook_url=hanging.url)
        proposal_create(
            user=user, market="BTC-EUR", side="buy", amount_eur="25.00", confidence=75, source="api"
        )
        [delivery] = handle(notify_queue.taken())

        delays = [notification_deliver(delivery_id=delivery.pk) for _ in range(3)]
    finally:
        hanging.stop()

    assert delays == [10, 20, None]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == ("FAILED", 3)
    assert delivery.finished_at is not None
    assert all("ReadTimeout" in a["error"] for a in delivery.attempts)
    assert all(a["duration_ms"] < 3000 for a in delivery.attempts)


def test_an_email_says_what_ended_with_its_codes(notify_queue, notify_settings, exchange):
    notify_settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    notify_settings.EXECUTION_RECONCILE_MIN_LOOKUPS = 1
    notify_settings.BITVAVO_ACCESS_WINDOW_MS = 100
    notify_settings.BITVAVO_READ_TIMEOUT = 0.1
    user = PolicyFactory().user
    notification_settings_update(user=user, email="alice@example.com")
    proposal = TradeProposalFactory(user=user, approved=True)
    # The order is refused before the exchange stores it and the answer is lost: only the
    # reconciler can decide, and it finds nothing.
    exchange.control.inject("error_109_no_commit")
    assert execution_run(proposal=proposal).execution.status == "SUBMITTING"
    assert notify_queue.taken() == []  # nothing ended yet

    time.sleep(0.25)  # past the access window (0.1 s) plus the read timeout (0.1 s)
    executions_reconcile()

    execution = TradeExecution.objects.get(proposal=proposal)
    assert (execution.status, execution.error_code) == ("FAILED", "ORDER_NOT_FOUND_AFTER_TIMEOUT")
    [delivery] = handle(notify_queue.taken())
    assert (delivery.channel, delivery.destination) == ("email", "alice@example.com")
    notification_deliver(delivery_id=delivery.pk)
    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == (
        f"[Auto Invest Oracle] Execution of proposal #{proposal.pk} FAILED "
        "(ORDER_NOT_FOUND_AFTER_TIMEOUT): buy 25.00 EUR of BTC-EUR"
    )
    assert "error_code: ORDER_NOT_FOUND_AFTER_TIMEOUT" in message.body
    assert f"/admin/trading/tradeproposal/{proposal.pk}/change/" in message.body
    delivery.refresh_from_db()
    assert delivery.status == "DELIVERED"


def test_the_emergency_stop_reaches_every_configured_user_once(notify_queue, notify_settings):
    alice, bob, carol = (PolicyFactory().user for _ in range(3))
    notification_settings_update(user=alice, email="alice@example.com")
    notification_settings_update(user=bob, email="bob@example.com", events=["execution_ended"])
    UserFactory(username="nobody-configured")
    emergency_stop_set(active=True, actor=carol, reason="maintenance")
    taken = notify_queue.taken()

    deliveries = handle(taken)
    again = handle(taken)  # a redelivered event creates nothing twice

    assert [(d.user_id, d.event) for d in deliveries] == [(alice.pk, "emergency_stop")]
    # The same row, queued again only because it was never tried; once tried, not at all.
    assert [d.pk for d in again] == [d.pk for d in deliveries]
    assert NotificationDelivery.objects.count() == 1
    notification_deliver(delivery_id=deliveries[0].pk)
    assert handle(taken) == []
    assert len(mail.outbox) == 1


def test_an_event_for_a_user_without_settings_makes_no_delivery(notify_queue, exchange):
    proposal = TradeProposalFactory(user=PolicyFactory().user, approved=True)
    execution_run(proposal=proposal)
    assert handle(notify_queue.taken()) == []
    assert not NotificationDelivery.objects.exists()


def test_a_private_target_is_refused_when_private_webhooks_are_not_allowed(
    notify_queue, notify_settings, webhook
):
    user = PolicyFactory().user
    notification_settings_update(user=user, webhook_url=webhook.url)
    proposal_create(
        user=user, market="BTC-EUR", side="buy", amount_eur="25.00", confidence=75, source="api"
    )
    [delivery] = handle(notify_queue.taken())
    notify_settings.NOTIFY_ALLOW_PRIVATE_WEBHOOKS = False

    for url in (webhook.url, "http://localhost/hook", "http://[::1]/", "http://10.1.2.3/"):
        with pytest.raises(NotificationSettingsInvalid) as refused:
            notification_settings_update(user=user, webhook_url=url)
        assert refused.value.code == "WEBHOOK_URL_PRIVATE"
    # Saved while allowed, sent after: checked again at send time, and nothing leaves.
    notification_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.attempts[0]["error"].startswith("WEBHOOK_URL_PRIVATE")
    assert webhook.requests == []


# --- the hot path -------------------------------------------------------------------------------


def test_the_execute_path_issues_the_same_statements_with_notifications_configured(
    notify_queue, exchange, webhook
):
    def statements(user) -> list[str]:
        proposal = TradeProposalFactory(user=user, approved=True)
        with CaptureQueriesContext(connection) as captured:
            assert execution_run(proposal=proposal).execution.status == "SUBMITTED"
        return [query["sql"] for query in captured.captured_queries]

    statements(PolicyFactory().user)  # warm: market rules cached, connections open
    plain = statements(PolicyFactory().user)
    configured_user = PolicyFactory().user
    notification_settings_update(
        user=configured_user, webhook_url=webhook.url, email="c@example.com"
    )
    configured = statements(configured_user)

    assert len(configured) == len(plain)
    assert not [sql for sql in configured if "notification" in sql]
    assert len(events(notify_queue.taken())) == 3  # each execution still published its end


def test_an_unreachable_broker_never_fails_the_trade(exchange):
    """A real execute in its own process whose broker refuses connections."""
    proposal = TradeProposalFactory(user=PolicyFactory().user, approved=True)
    env = child_env(
        {
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
            "ORACLE_ROLE": "execute",
            "BITVAVO_API_URL": exchange.api_url,
            "CACHE_URL": os.environ.get("CACHE_URL", ""),
            **exchange.server.trade_env(),
        }
    )

    done = subprocess.run(
        [sys.executable, "manage.py", "execute_proposal", str(proposal.pk)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "SUBMITTED" in done.stdout
    assert "notification not queued" in done.stderr
    assert TradeExecution.objects.get(proposal=proposal).status == "SUBMITTED"
    assert len(exchange.orders()) == 1
