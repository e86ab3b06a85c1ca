"""The Telegram bot in-process, against a local fake of the Bot API over real HTTP: linking
with a one-time code, the decision card as a delivery, taps through the webhook running the
same services as the API, and everything that must change nothing (a forged or replayed
button, a stranger, another user's chat, an expired code or proposal, bad webhook input)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifications.models import (
    NotificationDelivery,
    NotificationSettings,
    TelegramCallbackToken,
    TelegramLinkCode,
    TelegramUpdate,
)
from notifications.services import notification_deliver, notification_event_handle
from notifications.telegram import telegram_link_code_create
from tests.api.test_proposals_api import assert_error, client_for
from tests.factories import (
    PolicyFactory,
    ProposalOutcomeFactory,
    TradeProposalFactory,
    UserFactory,
)
from tests.telegram_server import TelegramServer
from trading.models import Policy, ProposalEvent, TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db

SECRET = "hook-secret-1234"
WEBHOOK = f"/telegram/webhook/{SECRET}"
ALICE_CHAT, ALICE_TG = 7001, 8001
BOB_CHAT, BOB_TG = 7002, 8002


@pytest.fixture
def bot(settings):
    server = TelegramServer().start()
    settings.TELEGRAM_BOT_TOKEN = server.token
    settings.TELEGRAM_API_URL = server.url
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    yield server
    server.stop()


def post(update, *, secret=SECRET, path=WEBHOOK):
    return APIClient().post(
        path, update, format="json", HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=secret
    )


def link(bot, user, *, chat_id, from_id):
    code = telegram_link_code_create(user=user).code
    response = post(bot.text(chat_id=chat_id, from_id=from_id, text=f"/start {code}"))
    assert response.status_code == 200, response.content
    return NotificationSettings.objects.get(user=user)


def last_text(bot, method="sendMessage") -> str:
    return bot.calls(method)[-1].params["text"]


def card_for(bot, proposal) -> dict[str, str]:
    """The proposal's card, sent as the notify worker sends it; returns its buttons."""
    notification_event_handle(
        event="proposal_pending", facts={"user_id": proposal.user_id, "proposal_id": proposal.pk}
    )
    delivery = NotificationDelivery.objects.get(
        channel="telegram", dedupe_key=f"proposal:{proposal.pk}"
    )
    assert notification_deliver(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == "DELIVERED", delivery.last_error
    return bot.buttons(bot.calls("sendMessage")[-1])


def tap(bot, data, *, chat_id=ALICE_CHAT, from_id=ALICE_TG):
    message_id = (
        TelegramCallbackToken.objects.filter(chat_id=chat_id)
        .exclude(message_id=None)
        .values_list("message_id", flat=True)
        .last()
        or 1
    )
    update = bot.tap(chat_id=chat_id, from_id=from_id, message_id=message_id, data=data)
    response = post(update)
    assert response.status_code == 200, response.content
    return response.json()["handled"], update


# --- linking ------------------------------------------------------------------------------


def test_the_link_api_gives_a_ten_minute_code(bot):
    alice = UserFactory()
    response = client_for(alice).post("/api/v1/notifications/telegram/link/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"code", "expires_at"} and len(body["code"]) == 10
    row = TelegramLinkCode.objects.get(user=alice)
    assert timedelta(minutes=9) < row.expires_at - timezone.now() <= timedelta(minutes=10)
    assert body["code"] not in row.code_hash  # only its hash is stored


def test_the_link_api_needs_a_user_and_the_bot(bot, settings):
    assert_error(APIClient().post("/api/v1/notifications/telegram/link/"), 401, "NOT_AUTHENTICATED")
    settings.TELEGRAM_BOT_TOKEN = ""
    response = client_for(UserFactory()).post("/api/v1/notifications/telegram/link/")
    assert_error(response, 409, "TELEGRAM_OFF")


def test_start_with_the_code_links_that_chat_and_that_telegram_user_once(bot):
    alice = UserFactory(username="alice")
    code = telegram_link_code_create(user=alice).code
    post(bot.text(chat_id=ALICE_CHAT, from_id=ALICE_TG, text=f"/start {code}"))
    row = NotificationSettings.objects.get(user=alice)
    assert (row.telegram_chat_id, row.telegram_user_id) == (ALICE_CHAT, ALICE_TG)
    assert "Linked to alice" in last_text(bot)

    # The same code again, from another chat: used up, links nothing.
    post(bot.text(chat_id=BOB_CHAT, from_id=BOB_TG, text=f"/start {code}"))
    assert "not valid" in last_text(bot)
    assert not NotificationSettings.objects.filter(telegram_chat_id=BOB_CHAT).exists()


def test_an_expired_or_wrong_code_links_nothing(bot):
    alice = UserFactory()
    code = telegram_link_code_create(user=alice).code
    TelegramLinkCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    post(bot.text(chat_id=ALICE_CHAT, from_id=ALICE_TG, text=f"/start {code}"))
    assert "expired" in last_text(bot)
    post(bot.text(chat_id=ALICE_CHAT, from_id=ALICE_TG, text="/start NOTACODE99"))
    assert "not valid" in last_text(bot)
    assert not NotificationSettings.objects.filter(telegram_chat_id__isnull=False).exists()


def test_a_new_code_voids_the_previous_one(bot):
    alice = UserFactory()
    first = telegram_link_code_create(user=alice).code
    telegram_link_code_create(user=alice)
    post(bot.text(chat_id=ALICE_CHAT, from_id=ALICE_TG, text=f"/start {first}"))
    assert "not valid" in last_text(bot)


def test_stop_unlinks_only_for_the_linked_telegram_user_and_voids_the_buttons(bot, exchange):
    alice = PolicyFactory().user
    link(bot, alice, chat_id=ALICE_CHAT, from_id=ALICE_TG)
    buttons = card_for(bot, TradeProposalFactory(user=alice))

    post(bot.text(chat_id=ALICE_CHAT, from_id=BOB_TG, text="/stop"))  # someone else in the chat
    assert NotificationSettings.objects.get(user=alice).telegram_linked
    post(bot.text(chat_id=ALICE_CHAT, from_id=ALICE_TG, text="/stop"))
    assert not NotificationSettings.objects.get(user=alice).telegram_linked
    assert "Unlinked" in last_text(bot)

    handled, _ = tap(bot, buttons["Approve"])
    assert handled == "refused"
    assert TradeProposal.objects.get(user=alice).status == "PENDING"


def test_a_chat_linked_to_one_user_cannot_be_linked_by_another(bot):
    alice, bob = UserFactory(), UserFactory()
    link(bot, alice, chat_id=ALICE_CHAT, from_id=ALICE_TG)
    code = telegram_link_code_create(user=bob).code
    post(bot.text(chat_id=ALICE_CHAT, from_id=BOB_TG, text=f"/start {code}"))
    assert "another account" in last_text(bot)
    assert not NotificationSettings.objects.filter(
        user=bob, telegram_chat_id__isnull=False
    ).exists()
    assert NotificationSettings.objects.get(user=alice).telegram_user_id == ALICE_TG


# --- the card and its buttons ---------------------------------------------------------------


@pytest.fixture
def alice(bot, exchange):
    user = PolicyFactory(user=UserFactory(username="alice")).user
    link(bot, user, chat_id=ALICE_CHAT, from_id=ALICE_TG)
    return user


def test_a_pending_proposal_sends_one_card_with_everything_to_decide_on(bot, alice, exchange):
    proposal = TradeProposalFactory(
        user=alice, rationale="Momentum is up.", price_at_proposal=Decimal("1000")
    )
    buttons = card_for(bot, proposal)
    text = last_text(bot)
    for part in (
        f"Proposal #{proposal.pk}: BUY 25.00 EUR of BTC-EUR",
        "Price now",
        "since 1,000.00 at proposal)",
        "Confidence 75%",
        "Why: Momentum is up.",
        "Preflight: ok kill switch, ok proposal state, ok allowlist",
        "Expires",
        "Status: PENDING",
        f"/admin/trading/tradeproposal/{proposal.pk}/change/",
    ):
        assert part in text, (part, text)
    assert list(buttons) == ["Approve", "Reject"]
    # Callback data is only a random token: no user, no proposal id.
    assert all(len(data) <= 64 and str(proposal.pk) not in data[3:6] for data in buttons.values())
    assert TelegramCallbackToken.objects.filter(proposal_id=proposal.pk, used_at=None).count() == 2


def test_the_card_shows_the_advisors_record_at_that_confidence(bot, alice):
    for net_return in ("0.015", "-0.005"):
        ProposalOutcomeFactory(
            proposal=TradeProposalFactory(user=alice, confidence=75),
            net_return=Decimal(net_return),
        )
    ProposalOutcomeFactory(proposal=TradeProposalFactory(user=alice, confidence=50))
    card_for(bot, TradeProposalFactory(user=alice, confidence=75))
    assert "record at 75% (24 h): 2 scored, 50% hits, mean net +0.50%" in last_text(bot)


def test_approve_then_execute_run_the_services_and_edit_the_card(bot, alice, exchange):
    proposal = TradeProposalFactory(user=alice)
    buttons = card_for(bot, proposal)

    handled, _ = tap(bot, buttons["Approve"])
    assert handled == "done"
    proposal.refresh_from_db()
    assert proposal.status == "APPROVED" and proposal.decided_by == alice
    edit = bot.calls("editMessageText")[-1]
    assert "Approved by alice (@ann)" in edit.params["text"]
    assert "Status: APPROVED by alice" in edit.params["text"]
    assert list(bot.buttons(edit)) == ["Execute", "Reject"]
    assert "Approved by alice" in bot.calls("answerCallbackQuery")[-1].params["text"]

    handled, _ = tap(bot, bot.buttons(edit)["Execute"])
    assert handled == "done"
    execution = TradeExecution.objects.get(proposal=proposal)
    assert execution.status == "CLAIMED"  # the execute worker sends it (test_telegram_bot.py)
    edit = bot.calls("editMessageText")[-1]
    assert f"Execution #{execution.pk} CLAIMED by alice" in edit.params["text"]
    assert bot.buttons(edit) == {}


def test_a_replayed_or_old_button_changes_nothing(bot, alice):
    proposal = TradeProposalFactory(user=alice)
    buttons = card_for(bot, proposal)
    tap(bot, buttons["Approve"])
    events = ProposalEvent.objects.filter(proposal=proposal).count()

    handled, _ = tap(bot, buttons["Approve"])  # the same button again
    assert handled == "refused"
    assert "already used" in bot.calls("answerCallbackQuery")[-1].params["text"]
    handled, _ = tap(bot, buttons["Reject"])  # the card's other old button
    assert handled == "refused"
    proposal.refresh_from_db()
    assert proposal.status == "APPROVED"
    assert ProposalEvent.objects.filter(proposal=proposal).count() == events


def test_the_same_update_delivered_twice_is_handled_once(bot, alice):
    proposal = TradeProposalFactory(user=alice)
    buttons = card_for(bot, proposal)
    update = bot.tap(chat_id=ALICE_CHAT, from_id=ALICE_TG, message_id=1, data=buttons["Approve"])
    assert post(update).json()["handled"] == "done"
    assert post(update).json()["handled"] == "duplicate"
    assert ProposalEvent.objects.filter(proposal=proposal, kind="approved").count() == 1
    assert TelegramUpdate.objects.filter(update_id=update["update_id"]).count() == 1


@pytest.mark.parametrize(
    "data", ["c1:" + "A" * 32, "c1:", "approve:1", "", "c1:" + "x" * 200, "c1:../../1"]
)
def test_a_forged_button_changes_nothing(bot, alice, data):
    proposal = TradeProposalFactory(user=alice)
    card_for(bot, proposal)
    handled, _ = tap(bot, data)
    assert handled == "refused"
    assert TradeProposal.objects.get(pk=proposal.pk).status == "PENDING"
    assert TelegramCallbackToken.objects.filter(used_at=None).count() == 2  # none used up


def test_a_stranger_or_another_chat_cannot_use_a_real_button(bot, alice):
    proposal = TradeProposalFactory(user=alice)
    buttons = card_for(bot, proposal)
    bob = PolicyFactory(user=UserFactory(username="bob")).user
    link(bot, bob, chat_id=BOB_CHAT, from_id=BOB_TG)

    # Alice's button pressed by someone else in her chat, by Bob in his own chat, by Bob's
    # Telegram account claiming her chat, and from an unlinked chat.
    for chat_id, from_id in ((ALICE_CHAT, BOB_TG), (BOB_CHAT, BOB_TG), (9999, ALICE_TG)):
        handled, _ = tap(bot, buttons["Approve"], chat_id=chat_id, from_id=from_id)
        assert handled == "refused"
    assert TradeProposal.objects.get(pk=proposal.pk).status == "PENDING"
    # Nothing used up: Alice's own tap still works.
    assert tap(bot, buttons["Approve"])[0] == "done"


def test_a_tap_on_an_expired_proposal_says_so_and_changes_nothing(bot, alice):
    proposal = TradeProposalFactory(user=alice)
    buttons = card_for(bot, proposal)
    TradeProposal.objects.filter(pk=proposal.pk).update(expires_at=timezone.now())
    handled, _ = tap(bot, buttons["Approve"])
    assert handled == "refused"
    assert "PROPOSAL_EXPIRED" in bot.calls("answerCallbackQuery")[-1].params["text"]
    edit = bot.calls("editMessageText")[-1]
    assert "Approve refused: PROPOSAL_EXPIRED" in edit.params["text"]
    assert bot.buttons(edit) == {}
    assert TradeProposal.objects.get(pk=proposal.pk).status == "PENDING"
    assert not ProposalEvent.objects.filter(proposal=proposal, kind="approved").exists()


def test_a_refused_execute_says_why_and_keeps_the_proposal_approved(bot, alice):
    proposal = TradeProposalFactory(user=alice)
    buttons = card_for(bot, proposal)
    tap(bot, buttons["Approve"])
    execute = bot.buttons(bot.calls("editMessageText")[-1])["Execute"]
    Policy.objects.filter(user=alice).update(trading_enabled=False)

    handled, _ = tap(bot, execute)
    assert handled == "refused"
    answer = bot.calls("answerCallbackQuery")[-1].params["text"]
    assert "PREFLIGHT_REFUSED" in answer and "(KILL_SWITCH)" in answer
    assert not TradeExecution.objects.filter(proposal=proposal).exists()
    edit = bot.calls("editMessageText")[-1]
    assert list(bot.buttons(edit)) == ["Execute", "Reject"]  # can be tried again later


def test_reject_asks_for_the_reason_and_the_reply_rejects(bot, alice):
    proposal = TradeProposalFactory(user=alice)
    buttons = card_for(bot, proposal)
    handled, _ = tap(bot, buttons["Reject"])
    assert handled == "reason_asked"
    prompt = bot.calls("sendMessage")[-1]
    assert "Reply with the reason" in prompt.params["text"]
    assert prompt.params["reply_markup"]["force_reply"] is True
    assert TradeProposal.objects.get(pk=proposal.pk).status == "PENDING"

    prompt_id = TelegramCallbackToken.objects.get(action="reject_reason").prompt_message_id
    # A reply from someone else in the chat does nothing.
    post(bot.text(chat_id=ALICE_CHAT, from_id=BOB_TG, text="no", reply_to=prompt_id))
    assert TradeProposal.objects.get(pk=proposal.pk).status == "PENDING"

    reply = bot.text(
        chat_id=ALICE_CHAT, from_id=ALICE_TG, text="Too late in the move.", reply_to=prompt_id
    )
    assert post(reply).json()["handled"] == "done"
    proposal.refresh_from_db()
    assert proposal.status == "REJECTED" and proposal.decision_reason == "Too late in the move."
    assert "Rejected (Too late in the move.) by alice" in last_text(bot, "editMessageText")

    # A second reply to the same prompt changes nothing.
    again = bot.text(chat_id=ALICE_CHAT, from_id=ALICE_TG, text="again", reply_to=prompt_id)
    assert post(again).json()["handled"] == "ignored"
    assert ProposalEvent.objects.filter(proposal=proposal, kind="rejected").count() == 1


def test_another_users_proposal_is_never_reachable_from_a_chat(bot, alice):
    bob = PolicyFactory(user=UserFactory(username="bob")).user
    link(bot, bob, chat_id=BOB_CHAT, from_id=BOB_TG)
    bobs = TradeProposalFactory(user=bob)
    bob_buttons = card_for(bot, bobs)
    # From Alice's chat, as Alice: Bob's button is not hers.
    handled, _ = tap(bot, bob_buttons["Approve"], chat_id=ALICE_CHAT, from_id=ALICE_TG)
    assert handled == "refused"
    assert TradeProposal.objects.get(pk=bobs.pk).status == "PENDING"


def test_other_events_reach_the_chat_as_messages(bot, alice):
    notification_event_handle(
        event="kill_switch",
        facts={"user_id": alice.pk, "trading_enabled": False, "at": timezone.now().isoformat()},
    )
    delivery = NotificationDelivery.objects.get(channel="telegram", event="kill_switch")
    notification_deliver(delivery_id=delivery.pk)
    assert "Trading turned OFF" in last_text(bot)
    assert bot.calls("sendMessage")[-1].params["chat_id"] == ALICE_CHAT


def test_a_failed_send_is_retried_as_a_delivery(bot, alice, settings):
    settings.NOTIFY_MAX_ATTEMPTS = 3
    proposal = TradeProposalFactory(user=alice)
    notification_event_handle(
        event="proposal_pending", facts={"user_id": alice.pk, "proposal_id": proposal.pk}
    )
    delivery = NotificationDelivery.objects.get(channel="telegram")
    bot.fail_next("sendMessage", 502)
    assert notification_deliver(delivery_id=delivery.pk) is not None  # a retry is due
    delivery.refresh_from_db()
    assert delivery.status == "PENDING" and "502" in delivery.last_error
    assert notification_deliver(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == "DELIVERED" and delivery.attempt_count == 2
    # Only the buttons of the card that arrived are live.
    assert TelegramCallbackToken.objects.filter(used_at=None).count() == 2


# --- the webhook's input --------------------------------------------------------------------


def test_the_webhook_checks_both_secrets(bot):
    update = bot.text(chat_id=1, from_id=1, text="/start X")
    assert_error(post(update, path="/telegram/webhook/wrong"), 404, "NOT_FOUND")
    assert_error(post(update, secret="wrong"), 403, "TELEGRAM_SECRET_INVALID")
    response = APIClient().post(WEBHOOK, update, format="json")
    assert_error(response, 403, "TELEGRAM_SECRET_INVALID")
    assert not TelegramUpdate.objects.exists()


def test_the_webhook_is_off_without_its_secret(bot, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    assert_error(post({"update_id": 1}, secret=""), 404, "TELEGRAM_OFF")


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        123,
        {},
        {"update_id": "1"},
        {"update_id": True},
        {"update_id": 1.5},
    ],
)
def test_the_webhook_refuses_what_is_not_an_update(bot, body):
    assert_error(post(body), 400, "TELEGRAM_UPDATE_INVALID")


def test_the_webhook_refuses_malformed_json(bot):
    response = APIClient().post(
        WEBHOOK,
        b"{not json",
        content_type="application/json",
        HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET,
    )
    assert_error(response, 400, "MALFORMED_REQUEST")


@pytest.mark.parametrize(
    "body",
    [
        {"update_id": 11, "message": "x"},
        {"update_id": 12, "message": {"chat": "x", "from": [], "text": 5}},
        {"update_id": 13, "message": {"chat": {"id": "7"}, "from": {"id": 7}, "text": "/start"}},
        {"update_id": 14, "callback_query": {"id": 5, "data": {"a": 1}}},
        {"update_id": 15, "callback_query": {"id": "q", "from": {"id": 1}, "data": "c1:x"}},
        {"update_id": 16, "edited_message": {"text": "hi"}},
    ],
)
def test_odd_updates_are_answered_never_with_a_500(bot, body):
    response = post(body)
    assert response.status_code == 200, response.content
    assert response.json()["handled"] in ("ignored", "refused", "start_without_code")


def test_text_the_database_cannot_store_is_refused_with_the_error_shape(bot):
    body = b'{"update_id": 18, "message": {"chat": {"id": 7}, "text": "\\u0000\\ud800"}}'
    response = APIClient().post(
        WEBHOOK, body, content_type="application/json", HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET
    )
    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "extra"}
