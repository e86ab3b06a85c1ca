"""Notifications on a real notify worker process, over real Redis, to a real local receiver.

The worker holds no exchange key; the execute worker never consumes the notify queue.
"""

import hashlib
import hmac
import json

import pytest

from config.celery import app
from notifications.models import NotificationDelivery
from notifications.services import notification_settings_update
from tests.factories import PolicyFactory, TradeProposalFactory
from tests.webhook_server import WebhookServer
from tests.workers import celery_worker, queue_drain, wait_for
from trading.claim import execution_claim
from trading.models import TradeExecution
from trading.send import execution_run
from trading.services import proposal_create

pytestmark = pytest.mark.django_db(transaction=True)

NO_KEYS = {
    "BITVAVO_READONLY_KEY": "",
    "BITVAVO_READONLY_SECRET": "",
    "BITVAVO_TRADE_KEY": "",
    "BITVAVO_TRADE_SECRET": "",
    "OPENAI_API_KEY": "",
}
# Short waits and timeouts, so back-off and failure happen within a test.
FAST_RETRIES = {
    "NOTIFY_MAX_ATTEMPTS": "3",
    "NOTIFY_RETRY_BACKOFF_SECONDS": "0.5",
    "NOTIFY_CONNECT_TIMEOUT": "1",
    "NOTIFY_READ_TIMEOUT": "1",
}
# The test receivers listen on 127.0.0.1.
LOCAL_RECEIVERS = {"NOTIFY_ALLOW_PRIVATE_WEBHOOKS": "true"}


def notify_worker(*, concurrency: int = 2, **extra: str):
    return celery_worker(
        queue="notify",
        env={"ORACLE_ROLE": "notify", **NO_KEYS, **LOCAL_RECEIVERS, **extra},
        concurrency=concurrency,
    )


@pytest.fixture
def purged_queues():
    queue_drain("notify")
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("execute")
    yield


@pytest.fixture(autouse=True)
def local_receivers(settings):
    settings.NOTIFY_ALLOW_PRIVATE_WEBHOOKS = True


@pytest.fixture
def webhook():
    server = WebhookServer().start()
    yield server
    server.stop()


def test_an_execution_on_the_execute_worker_is_notified_by_the_notify_worker(
    exchange, webhook, purged_queues
):
    user = PolicyFactory().user
    secret = notification_settings_update(user=user, webhook_url=webhook.url).webhook_secret
    proposal = TradeProposalFactory(user=user, approved=True)
    claim = execution_claim(proposal=proposal, actor_id=None).execution  # as the web claims
    execute_env = {
        "ORACLE_ROLE": "execute",
        "BITVAVO_API_URL": exchange.api_url,
        **NO_KEYS,
        **exchange.server.trade_env(),
    }

    with (
        celery_worker(queue="execute", env=execute_env, concurrency=1) as executor,
        notify_worker(concurrency=1) as notifier,
    ):
        app.send_task("trading.tasks.execute_claim", args=[claim.pk], queue="execute")
        wait_for(lambda: len(webhook.requests) == 1, what="the webhook")
        wait_for(
            lambda: NotificationDelivery.objects.filter(status="DELIVERED").exists(),
            what="the delivery to be recorded",
        )
        assert "notify_deliver" in notifier.log()
        received = [line for line in executor.log().splitlines() if "] received" in line]
        assert received and all("execute_claim" in line for line in received)

    execution = TradeExecution.objects.get(proposal=proposal)
    assert execution.status == "SUBMITTED"
    [request] = webhook.requests
    signed = request.headers["X-Oracle-Timestamp"].encode() + b"." + request.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert request.headers["X-Oracle-Signature"] == f"sha256={expected}"
    body = json.loads(request.body)
    assert body["event"] == "execution_ended"
    assert body["data"]["execution"]["id"] == execution.pk
    assert body["data"]["execution"]["status"] == "SUBMITTED"
    assert body["data"]["execution"]["exchange_order_id"] == exchange.orders()[0]["orderId"]
    delivery = NotificationDelivery.objects.get()
    assert (delivery.event, delivery.attempt_count) == ("execution_ended", 1)


def test_a_500_then_200_is_retried_by_the_worker_and_delivered(webhook, purged_queues):
    user = PolicyFactory().user
    notification_settings_update(user=user, webhook_url=webhook.url, events=["proposal_pending"])
    webhook.script(500)

    with notify_worker(**FAST_RETRIES):
        proposal_create(
            user=user, market="BTC-EUR", side="buy", amount_eur="25.00", confidence=75, source="api"
        )
        wait_for(lambda: NotificationDelivery.objects.filter(status="DELIVERED").exists())

    delivery = NotificationDelivery.objects.get()
    assert delivery.attempt_count == 2
    assert [(a["outcome"], a["status_code"]) for a in delivery.attempts] == [
        ("failed", 500),
        ("delivered", 200),
    ]
    assert len(webhook.requests) == 2
    assert {r.headers["X-Oracle-Delivery"] for r in webhook.requests} == {str(delivery.pk)}


def test_a_receiver_that_never_answers_fails_and_the_trade_stands(exchange, purged_queues):
    hanging = WebhookServer(hang=True).start()
    try:
        user = PolicyFactory().user
        notification_settings_update(user=user, webhook_url=hanging.url)
        proposal = TradeProposalFactory(user=user, approved=True)
        with notify_worker(**FAST_RETRIES):
            outcome = execution_run(proposal=proposal)
            assert outcome.execution.status == "SUBMITTED"
            wait_for(lambda: NotificationDelivery.objects.filter(status="FAILED").exists())
    finally:
        hanging.stop()

    delivery = NotificationDelivery.objects.get()
    assert (delivery.event, delivery.attempt_count) == ("execution_ended", 3)
    assert all("ReadTimeout" in a["error"] for a in delivery.attempts)
    assert len(hanging.requests) == 3
    assert TradeExecution.objects.get(proposal=proposal).status == "SUBMITTED"
    assert len(exchange.orders()) == 1
