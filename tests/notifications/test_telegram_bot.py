"""The Telegram bot on real processes: `manage.py telegram_bot` long-polling a local fake of
the Bot API, the notify worker sending the cards and messages, the execute worker placing
the order at the simulator, all over real Redis and PostgreSQL.

Link with a code, the card of a new proposal, Approve then Execute: exactly one order, the
card edited each time, the outcome in the chat. A duplicate tap, a resent update and the
bot killed and restarted handle nothing twice; reject asks for the reason; a stranger's
tap and a tap on an expired proposal change nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from config.celery import app
from notifications.models import (
    NotificationDelivery,
    NotificationSettings,
    TelegramCallbackToken,
    TelegramUpdate,
)
from notifications.services import notification_deliver, notification_event_handle
from notifications.telegram import telegram_link_code_create
from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory
from tests.telegram_server import TelegramServer
from tests.workers import ROOT, celery_worker, child_env, queue_drain, wait_for
from trading.models import ProposalEvent, TradeExecution, TradeProposal
from trading.services import proposal_create

pytestmark = pytest.mark.django_db(transaction=True)

CHAT, TG_USER = 5101, 6101
STRANGER = 6999
NO_KEYS = {
    "BITVAVO_READONLY_KEY": "",
    "BITVAVO_READONLY_SECRET": "",
    "BITVAVO_TRADE_KEY": "",
    "BITVAVO_TRADE_SECRET": "",
    "OPENAI_API_KEY": "",
}


@pytest.fixture
def bot_api(settings):
    server = TelegramServer().start()
    settings.TELEGRAM_BOT_TOKEN = server.token
    settings.TELEGRAM_API_URL = server.url
    yield server
    server.stop()


@pytest.fixture
def purged_queues():
    queue_drain("notify")
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("execute")
    yield


def telegram_env(server: TelegramServer, exchange) -> dict[str, str]:
    return {
        **NO_KEYS,
        "TELEGRAM_BOT_TOKEN": server.token,
        "TELEGRAM_API_URL": server.url,
        "TELEGRAM_POLL_TIMEOUT": "1",
        "BITVAVO_API_URL": exchange.api_url,
        "NOTIFY_RETRY_BACKOFF_SECONDS": "0.5",
    }


@contextlib.contextmanager
def bot_process(env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`manage.py telegram_bot` until the block ends (or a test kills it)."""
    log = tempfile.NamedTemporaryFile(prefix="telegram-bot-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "telegram_bot"],
        cwd=ROOT,
        env=child_env({"ORACLE_ROLE": "web", **env}),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    text = lambda: Path(log.name).read_text(errors="replace")  # noqa: E731
    try:
        wait_for(
            lambda: "polling from" in text() or process.poll() is not None,
            what="the bot to start polling",
        )
        assert process.poll() is None, text()
        process.log = text
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        os.unlink(log.name)


def sent_cards(server: TelegramServer):
    return [c for c in server.calls("sendMessage") if server.buttons(c)]


def linked_user(server: TelegramServer):
    user = PolicyFactory(user=UserFactory(username="ann")).user
    code = telegram_link_code_create(user=user).code
    server.push(server.text(chat_id=CHAT, from_id=TG_USER, text=f"/start {code}"))
    wait_for(
        lambda: NotificationSettings.objects.filter(user=user, telegram_chat_id=CHAT).exists(),
        what="the chat to be linked",
    )
    return user


def new_proposal(user):
    return proposal_create(
        user=user,
        market="BTC-EUR",
        side="buy",
        amount_eur="25",
        confidence=75,
        rationale="Momentum is up.",
        source=TradeProposal.Source.API,
        actor=user,
    )


def test_link_card_approve_execute_once_and_a_restarted_bot_handles_nothing_twice(
    bot_api, exchange, purged_queues
):
    env = telegram_env(bot_api, exchange)
    execute_env = {
        **NO_KEYS,
        "ORACLE_ROLE": "execute",
        "BITVAVO_API_URL": exchange.api_url,
        **exchange.server.trade_env(),
    }
    with (
        celery_worker(queue="notify", env={"ORACLE_ROLE": "notify", **env}, concurrency=1),
        celery_worker(queue="execute", env=execute_env, concurrency=1),
    ):
        with bot_process(env) as bot:
            user = linked_user(bot_api)
            assert "Linked to ann" in bot_api.calls("sendMessage")[-1].params["text"]

            proposal = new_proposal(user)
            wait_for(lambda: len(sent_cards(bot_api)) == 1, what="the card")
            card = sent_cards(bot_api)[0]
            assert card.params["chat_id"] == CHAT
            assert f"Proposal #{proposal.pk}: BUY 25.00 EUR of BTC-EUR" in card.params["text"]
            wait_for(
                lambda: TelegramCallbackToken.objects.filter(message_id__isnull=False).exists(),
                what="the card's message id to be recorded",
            )
            message_id = TelegramCallbackToken.objects.exclude(message_id=None)[0].message_id

            approve = bot_api.tap(
                chat_id=CHAT,
                from_id=TG_USER,
                message_id=message_id,
                data=bot_api.buttons(card)["Approve"],
            )
            bot_api.push(approve)
            wait_for(lambda: len(bot_api.calls("editMessageText")) == 1, what="the card edit")
            edited = bot_api.calls("editMessageText")[0]
            assert "Approved by ann" in edited.params["text"]
            assert edited.params["message_id"] == message_id
            proposal.refresh_from_db()
            assert proposal.status == "APPROVED" and proposal.decided_by_id == user.pk

            execute = bot_api.tap(
                chat_id=CHAT,
                from_id=TG_USER,
                message_id=message_id,
                data=bot_api.buttons(edited)["Execute"],
            )
            bot_api.push(execute)
            wait_for(
                lambda: TradeExecution.objects.filter(
                    proposal=proposal, status="SUBMITTED"
                ).exists(),
                what="the execution to be SUBMITTED",
            )
            wait_for(lambda: len(bot_api.calls("editMessageText")) == 2, what="the second edit")
            assert "Execution #" in bot_api.calls("editMessageText")[1].params["text"]
            wait_for(
                lambda: any(
                    "SUBMITTED" in c.params["text"] and "Execution of proposal" in c.params["text"]
                    for c in bot_api.calls("sendMessage")
                ),
                what="the execution outcome in the chat",
            )

            # A second tap on the same Execute button (a new update): refused, nothing sent.
            answers = len(bot_api.calls("answerCallbackQuery"))
            bot_api.push(
                bot_api.tap(
                    chat_id=CHAT,
                    from_id=TG_USER,
                    message_id=message_id,
                    data=bot_api.buttons(edited)["Execute"],
                )
            )
            wait_for(
                lambda: len(bot_api.calls("answerCallbackQuery")) == answers + 1,
                what="the duplicate tap's answer",
            )
            assert "already used" in bot_api.calls("answerCallbackQuery")[-1].params["text"]

            # Killed before it could confirm: Telegram sends the same updates again.
            os.killpg(bot.pid, signal.SIGKILL)
            bot.wait()

        handled = TelegramUpdate.objects.count()
        answers = len(bot_api.calls("answerCallbackQuery"))
        bot_api.resend(approve)
        bot_api.resend(execute)
        with bot_process(env):
            marker = bot_api.push(bot_api.text(chat_id=CHAT, from_id=TG_USER, text="/start"))
            wait_for(
                lambda: TelegramUpdate.objects.filter(update_id=marker["update_id"]).exists(),
                what="the restarted bot to reach a new update",
            )
            wait_for(
                lambda: "Send /start <code>" in bot_api.calls("sendMessage")[-1].params["text"],
                what="the answer to the new update",
            )
        assert TelegramUpdate.objects.count() == handled + 1
        assert len(bot_api.calls("answerCallbackQuery")) == answers

    assert len(exchange.orders()) == 1
    assert TradeExecution.objects.filter(proposal=proposal).count() == 1
    assert ProposalEvent.objects.filter(proposal=proposal, kind="approved").count() == 1


def test_reject_with_a_reason_a_strangers_tap_and_an_expired_proposal(
    bot_api, exchange, purged_queues
):
    env = telegram_env(bot_api, exchange)
    with (
        celery_worker(queue="notify", env={"ORACLE_ROLE": "notify", **env}, concurrency=1),
        bot_process(env),
    ):
        user = linked_user(bot_api)
        first, second = new_proposal(user), new_proposal(user)
        wait_for(lambda: len(sent_cards(bot_api)) == 2, what="both cards")
        cards = {
            int(c.params["text"].split("#", 1)[1].split(":", 1)[0]): c for c in sent_cards(bot_api)
        }

        # A stranger in the linked chat taps Reject: refused, the button still works.
        answers = len(bot_api.calls("answerCallbackQuery"))
        reject = bot_api.buttons(cards[first.pk])["Reject"]
        bot_api.push(bot_api.tap(chat_id=CHAT, from_id=STRANGER, message_id=1, data=reject))
        wait_for(
            lambda: len(bot_api.calls("answerCallbackQuery")) == answers + 1,
            what="the stranger's answer",
        )
        assert "Only the linked" in bot_api.calls("answerCallbackQuery")[-1].params["text"]

        bot_api.push(bot_api.tap(chat_id=CHAT, from_id=TG_USER, message_id=1, data=reject))
        wait_for(
            lambda: "Reply with the reason" in bot_api.calls("sendMessage")[-1].params["text"],
            what="the bot to ask for the reason",
        )
        prompts = TelegramCallbackToken.objects.filter(action="reject_reason")
        wait_for(prompts.exists, what="the reason prompt to be recorded")
        prompt_id = prompts.get().prompt_message_id
        bot_api.push(
            bot_api.text(chat_id=CHAT, from_id=TG_USER, text="Spread too wide.", reply_to=prompt_id)
        )
        wait_for(
            lambda: TradeProposal.objects.filter(pk=first.pk, status="REJECTED").exists(),
            what="the rejection",
        )
        first.refresh_from_db()
        assert first.decision_reason == "Spread too wide." and first.decided_by_id == user.pk

        # The second proposal expires before its Approve is tapped.
        TradeProposal.objects.filter(pk=second.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        answers = len(bot_api.calls("answerCallbackQuery"))
        approve = bot_api.buttons(cards[second.pk])["Approve"]
        bot_api.push(bot_api.tap(chat_id=CHAT, from_id=TG_USER, message_id=1, data=approve))
        wait_for(
            lambda: len(bot_api.calls("answerCallbackQuery")) == answers + 1,
            what="the expired tap's answer",
        )
        assert "PROPOSAL_EXPIRED" in bot_api.calls("answerCallbackQuery")[-1].params["text"]
        second.refresh_from_db()
        assert second.status == "PENDING" and second.decided_at is None


def test_updates_posted_by_webhook_over_http_link_and_approve(
    bot_api, exchange, live_server, settings
):
    """The fake posts updates to the web server's webhook, as Telegram does after setWebhook
    with a secret_token."""
    settings.TELEGRAM_WEBHOOK_SECRET = "webhook-secret-5678"
    url = f"{live_server.url}/telegram/webhook/webhook-secret-5678"
    user = PolicyFactory(user=UserFactory(username="ann")).user
    code = telegram_link_code_create(user=user).code
    answer = bot_api.post_to_webhook(
        url, bot_api.text(chat_id=CHAT, from_id=TG_USER, text=f"/start {code}"), secret="nope"
    )
    assert answer.status_code == 403 and answer.json()["code"] == "TELEGRAM_SECRET_INVALID"
    update = bot_api.text(chat_id=CHAT, from_id=TG_USER, text=f"/start {code}")
    answer = bot_api.post_to_webhook(url, update, secret="webhook-secret-5678")
    assert answer.status_code == 200 and answer.json() == {"handled": "start"}

    proposal = TradeProposalFactory(user=user)
    notification_event_handle(
        event="proposal_pending", facts={"user_id": user.pk, "proposal_id": proposal.pk}
    )
    delivery = NotificationDelivery.objects.get(channel="telegram")
    notification_deliver(delivery_id=delivery.pk)
    card = sent_cards(bot_api)[-1]
    tap = bot_api.tap(
        chat_id=CHAT, from_id=TG_USER, message_id=1, data=bot_api.buttons(card)["Approve"]
    )
    answer = bot_api.post_to_webhook(url, tap, secret="webhook-secret-5678")
    assert answer.json() == {"handled": "done"}
    assert bot_api.post_to_webhook(url, tap, secret="webhook-secret-5678").json() == {
        "handled": "duplicate"
    }
    proposal.refresh_from_db()
    assert proposal.status == "APPROVED" and proposal.decided_by_id == user.pk
    queue_drain("notify")
