"""The Telegram bot: a linked chat gets each proposal as a card with Approve / Reject /
Execute buttons, and every other notification as a message.

- Linking: `telegram_link_code_create` gives a one-time code (10 minutes, once); `/start
  <code>` in a chat stores that chat and that Telegram user on the user's settings; `/stop`
  unlinks.
- Buttons carry only a random token (`c1:<token>`); its row (`TelegramCallbackToken`, stored
  as a SHA-256) says whose proposal, which action and which chat. A tap counts only from the
  linked chat and its linked Telegram user, uses the token once (compare-and-set), and runs
  the same service as the console and the API, through the desk trading registers
  (`telegram_desk_register`): this app knows nothing of proposals.
- Updates (webhook or long polling) are handled once each: the update id is recorded first.
- Cards and messages are notification deliveries (the notify worker, with retries); the
  edit of a card after a tap and the answer to the tap are made by whoever handled the tap.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import DomainError
from core.scoping import scope_narrow_to_user
from notifications.errors import NotificationError
from notifications.models import (
    NotificationDelivery,
    NotificationEvent,
    NotificationSettings,
    TelegramCallbackToken,
    TelegramLinkCode,
    TelegramUpdate,
)

logger = logging.getLogger(__name__)

LINK_CODE_MINUTES = 10
LINK_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: typed by hand
LINK_CODE_LENGTH = 10
CALLBACK_PREFIX = "c1:"
REASON_PROMPT_MINUTES = 10
MAX_MESSAGE_LENGTH = 4096
Action = TelegramCallbackToken.Action
BUTTON_LABELS = {Action.APPROVE: "Approve", Action.REJECT: "Reject", Action.EXECUTE: "Execute"}


class TelegramOff(NotificationError):
    code = "TELEGRAM_OFF"
    http_status = 409


class TelegramUpdateInvalid(NotificationError):
    code = "TELEGRAM_UPDATE_INVALID"


class TelegramSecretInvalid(NotificationError):
    code = "TELEGRAM_SECRET_INVALID"
    http_status = 403


def telegram_enabled() -> bool:
    return bool(settings.TELEGRAM_BOT_TOKEN)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- the Bot API over HTTP ---------------------------------------------------------------------


class TelegramApiError(Exception):
    def __init__(self, method: str, code: int | None, description: str) -> None:
        super().__init__(f"{method}: {code} {description}")
        self.code = code
        self.description = description


def bot_api(method: str, *, read_timeout: float | None = None, **params: Any) -> Any:
    """One Bot API call (POST, JSON); its `result`, or TelegramApiError."""
    url = f"{settings.TELEGRAM_API_URL.rstrip('/')}/bot{settings.TELEGRAM_BOT_TOKEN}/{method}"
    timeout = (settings.NOTIFY_CONNECT_TIMEOUT, read_timeout or settings.NOTIFY_READ_TIMEOUT)
    try:
        response = requests.post(url, json=params, timeout=timeout)
        body = response.json()
    except (requests.RequestException, ValueError) as error:
        raise TelegramApiError(method, None, f"{type(error).__name__}: {error}") from None
    if not isinstance(body, dict) or not body.get("ok"):
        description = body.get("description", "") if isinstance(body, dict) else ""
        raise TelegramApiError(method, response.status_code, str(description)[:300])
    return body.get("result")


def _bot_api_quiet(method: str, **params: Any) -> Any:
    """For answers and edits after a tap: the decision is made and recorded whatever
    Telegram says, so a failure is logged, never raised."""
    try:
        return bot_api(method, **params)
    except TelegramApiError as error:
        logger.warning("telegram %s failed: %s", method, error)
        return None


# --- what trading tells the bot ------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """A proposal's card: its text and the actions its buttons offer now."""

    text: str
    actions: tuple[str, ...]


class DecisionDesk(Protocol):
    def card(self, *, user, proposal_id: int) -> Card | None:
        """The card of the user's proposal as it is now; None if it is not theirs or gone."""

    def act(self, *, user, proposal_id: int, action: str, reason: str = "") -> str:
        """Runs the action's service as `user`; returns what happened in a few words, or
        raises DomainError saying why it was refused."""


_desk: list[DecisionDesk] = []


def telegram_desk_register(desk: DecisionDesk) -> None:
    _desk[:] = [desk]


def _the_desk() -> DecisionDesk:
    if not _desk:
        raise RuntimeError("No decision desk registered (trading registers it when loaded).")
    return _desk[0]


# --- linking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkCode:
    code: str
    expires_at: Any


def telegram_link_code_create(*, user) -> LinkCode:
    """A new one-time code for `user`; any earlier unused code of theirs stops working."""
    if not telegram_enabled():
        raise TelegramOff("The Telegram bot is not configured (TELEGRAM_BOT_TOKEN).")
    code = "".join(secrets.choice(LINK_CODE_ALPHABET) for _ in range(LINK_CODE_LENGTH))
    now = timezone.now()
    expires_at = now + timedelta(minutes=LINK_CODE_MINUTES)
    with transaction.atomic():
        TelegramLinkCode.objects.for_user(user).filter(used_at__isnull=True).update(used_at=now)
        TelegramLinkCode.objects.create(user=user, code_hash=_sha256(code), expires_at=expires_at)
    return LinkCode(code=code, expires_at=expires_at)


def _settings_of_chat(chat_id: int) -> NotificationSettings | None:
    return (
        NotificationSettings.objects.visible()
        .select_related("user")
        .filter(telegram_chat_id=chat_id)
        .first()
    )


def _link(*, code: str, chat_id: int, from_id: int) -> str:
    now = timezone.now()
    linked = _settings_of_chat(chat_id)
    if linked is not None:
        if linked.telegram_user_id == from_id:
            return "This chat is already linked. /stop unlinks it."
        return "This chat is linked to another account."
    with transaction.atomic():
        row = (
            TelegramLinkCode.objects.visible()
            .select_for_update()
            .filter(code_hash=_sha256(code.strip().upper()))
            .first()
        )
        if row is None or row.used_at is not None:
            return "This code is not valid (or was used). Ask the console for a new one."
        if row.expires_at <= now:
            return "This code has expired. Ask the console for a new one."
        TelegramLinkCode.objects.visible().filter(pk=row.pk).update(used_at=now)
        settings_row, _ = NotificationSettings.objects.visible().get_or_create(
            user_id=row.user_id, defaults={"webhook_secret": secrets.token_hex(32)}
        )
        settings_row.telegram_chat_id = chat_id
        settings_row.telegram_user_id = from_id
        settings_row.telegram_linked_at = now
        try:
            with transaction.atomic():
                settings_row.save()
        except IntegrityError:  # another user linked this chat meanwhile
            return "This chat is linked to another account."
    name = settings_row.user.get_username()
    return f"Linked to {name}. Proposals awaiting approval will come here. /stop unlinks."


def _unlink(*, chat_id: int, from_id: int) -> str:
    changed = (
        NotificationSettings.objects.visible()
        .filter(telegram_chat_id=chat_id, telegram_user_id=from_id)
        .update(
            telegram_chat_id=None,
            telegram_user_id=None,
            telegram_linked_at=None,
            updated_at=timezone.now(),
        )
    )
    if not changed:
        return "This chat is not linked (or not by you)."
    # The buttons already sent stop working with the link.
    TelegramCallbackToken.objects.visible().filter(chat_id=chat_id, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    return "Unlinked. No more notifications here."


# --- cards: sent by the notify worker as deliveries -----------------------------------------


def _keyboard(*, user_id: int, proposal_id: int, chat_id: int, actions) -> tuple[dict, list[int]]:
    """Fresh buttons for `actions`; returns the reply markup and the new token rows' ids."""
    rows, ids = [], []
    for action in actions:
        token = secrets.token_urlsafe(24)  # 32 characters: callback data may hold 64 bytes
        ids.append(
            TelegramCallbackToken.objects.create(
                user_id=user_id,
                token_hash=_sha256(token),
                proposal_id=proposal_id,
                action=action,
                chat_id=chat_id,
            ).pk
        )
        rows.append({"text": BUTTON_LABELS[action], "callback_data": CALLBACK_PREFIX + token})
    return {"inline_keyboard": [rows] if rows else []}, ids


def _tokens_void(*, user_id: int, proposal_id: int, chat_id: int) -> None:
    TelegramCallbackToken.objects.for_user(user_id).filter(
        proposal_id=proposal_id, chat_id=chat_id, used_at__isnull=True
    ).update(used_at=timezone.now())


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_LENGTH else text[: MAX_MESSAGE_LENGTH - 1] + "…"


def telegram_text(payload: dict) -> str:
    """A notification other than a card, as a short message."""
    lines = [payload["subject"]]
    data = payload.get("data") or {}
    inner = data.get("execution") or {}
    for name in ("status", "error_code", "error_message", "filled_eur", "average_price"):
        if inner.get(name):
            lines.append(f"{name.replace('_', ' ')}: {inner[name]}")
    if data.get("reason"):
        lines.append(f"reason: {data['reason']}")
    if data.get("url"):
        lines.append(data["url"])
    return _clip("\n".join(lines))


def telegram_deliver(delivery: NotificationDelivery) -> tuple[bool, str]:
    """One attempt at a Telegram delivery: (delivered, error)."""
    if not telegram_enabled():
        return False, "TELEGRAM_OFF: no TELEGRAM_BOT_TOKEN in the notify worker."
    chat_id = int(delivery.destination)
    linked = (
        NotificationSettings.objects.filter(user_id=delivery.user_id, telegram_chat_id=chat_id)
        .values_list("telegram_chat_id", flat=True)
        .first()
    )
    if linked is None:
        return False, "TELEGRAM_UNLINKED: the chat is no longer linked."
    if delivery.event == NotificationEvent.PROPOSAL_PENDING:
        return _card_send(delivery, chat_id)
    try:
        bot_api("sendMessage", chat_id=chat_id, text=telegram_text(delivery.payload))
    except TelegramApiError as error:
        return False, str(error)[:500]
    return True, ""


def _card_send(delivery: NotificationDelivery, chat_id: int) -> tuple[bool, str]:
    proposal_id = delivery.payload["data"]["proposal"]["id"]
    user = NotificationSettings.objects.select_related("user").get(user_id=delivery.user_id).user
    card = _the_desk().card(user=user, proposal_id=proposal_id)
    if card is None:
        return True, ""  # the proposal is gone: nothing to decide
    with transaction.atomic():
        # A retry's card replaces the one an earlier attempt may have sent unrecorded.
        _tokens_void(user_id=user.pk, proposal_id=proposal_id, chat_id=chat_id)
        markup, token_ids = _keyboard(
            user_id=user.pk, proposal_id=proposal_id, chat_id=chat_id, actions=card.actions
        )
    try:
        sent = bot_api("sendMessage", chat_id=chat_id, text=_clip(card.text), reply_markup=markup)
    except TelegramApiError as error:
        return False, str(error)[:500]
    message_id = sent.get("message_id") if isinstance(sent, dict) else None
    TelegramCallbackToken.objects.for_user(user).filter(pk__in=token_ids).update(
        message_id=message_id
    )
    return True, ""


# --- updates: the webhook and the poller both end here --------------------------------------


@dataclass(frozen=True)
class Update:
    update_id: int
    chat_id: int | None = None
    from_id: int | None = None
    from_name: str = ""
    text: str = ""
    reply_to_message_id: int | None = None
    callback_id: str = ""
    callback_data: str = ""
    message_id: int | None = None  # the card a callback came from


def _int(value) -> int | None:
    return value if type(value) is int else None


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def update_parse(body: object) -> Update:
    """The parts of an update the bot uses; anything else in it is ignored. Refuses only
    what is not an update at all (TELEGRAM_UPDATE_INVALID)."""
    if not isinstance(body, dict) or _int(body.get("update_id")) is None:
        raise TelegramUpdateInvalid(
            "An update is a JSON object with an integer update_id.", extra={"field": "update_id"}
        )
    callback = body.get("callback_query")
    if isinstance(callback, dict):
        message = callback.get("message") if isinstance(callback.get("message"), dict) else {}
        sender = callback.get("from") if isinstance(callback.get("from"), dict) else {}
        chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
        return Update(
            update_id=body["update_id"],
            chat_id=_int(chat.get("id")),
            from_id=_int(sender.get("id")),
            from_name=_str(sender.get("username")) or _str(sender.get("first_name")),
            callback_id=_str(callback.get("id")),
            callback_data=_str(callback.get("data")),
            message_id=_int(message.get("message_id")),
        )
    message = body.get("message")
    if isinstance(message, dict):
        sender = message.get("from") if isinstance(message.get("from"), dict) else {}
        chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
        reply_to = message.get("reply_to_message")
        return Update(
            update_id=body["update_id"],
            chat_id=_int(chat.get("id")),
            from_id=_int(sender.get("id")),
            from_name=_str(sender.get("username")) or _str(sender.get("first_name")),
            text=_str(message.get("text"))[:2000],
            reply_to_message_id=_int(reply_to.get("message_id"))
            if isinstance(reply_to, dict)
            else None,
        )
    return Update(update_id=body["update_id"])


def _update_claim(update_id: int) -> bool:
    """True for the first handler of this update; a resent one is handled never again."""
    try:
        with transaction.atomic():
            TelegramUpdate.objects.create(update_id=update_id)
    except IntegrityError:
        return False
    return True


def telegram_update_handle(body: object) -> str:
    """Handles one update (once per update id). Returns what was done, for logs and tests."""
    update = update_parse(body)
    if not _update_claim(update.update_id):
        return "duplicate"
    if update.chat_id is None or update.from_id is None:
        return "ignored"
    if update.callback_id:
        return _tap(update)
    text = update.text.strip()
    if text.startswith("/start"):
        code = text.removeprefix("/start").strip()
        if not code:
            _say(update.chat_id, "Send /start <code>, with the code from the console.")
            return "start_without_code"
        _say(update.chat_id, _link(code=code, chat_id=update.chat_id, from_id=update.from_id))
        return "start"
    if text.startswith("/stop"):
        _say(update.chat_id, _unlink(chat_id=update.chat_id, from_id=update.from_id))
        return "stop"
    if text:
        return _reason_reply(update)
    return "ignored"


def _say(chat_id: int, text: str, **extra: Any) -> Any:
    return _bot_api_quiet("sendMessage", chat_id=chat_id, text=_clip(text), **extra)


def _answer(update: Update, text: str) -> None:
    _bot_api_quiet("answerCallbackQuery", callback_query_id=update.callback_id, text=text[:200])


def _actor(update: Update) -> NotificationSettings | None:
    """The linked settings when this chat is linked and its linked Telegram user sent it."""
    linked = _settings_of_chat(update.chat_id)
    if linked is None or linked.telegram_user_id != update.from_id:
        return None
    return linked


def _token_take(*, token_hash: str, linked: NotificationSettings, actions) -> tuple:
    """Uses the token once (compare-and-set): (row, None), or (None, why not)."""
    row = (
        TelegramCallbackToken.objects.for_user(linked.user)
        .filter(token_hash=token_hash, chat_id=linked.telegram_chat_id, action__in=actions)
        .first()
    )
    if row is None:
        return None, "This button is not valid."
    taken = TelegramCallbackToken.objects.for_user(linked.user).filter(
        pk=row.pk, used_at__isnull=True
    )
    if not taken.update(used_at=timezone.now()):
        return None, "This button was already used."
    return row, None


def _tap(update: Update) -> str:
    data = update.callback_data
    if not data.startswith(CALLBACK_PREFIX):
        _answer(update, "This button is not valid.")
        return "refused"
    linked = _actor(update)
    if linked is None:
        # Another chat or another person: nothing is read, nothing is used up.
        _answer(update, "Only the linked chat's own user can act here.")
        return "refused"
    scope_narrow_to_user(linked.user)
    row, refusal = _token_take(
        token_hash=_sha256(data.removeprefix(CALLBACK_PREFIX)),
        linked=linked,
        actions=list(BUTTON_LABELS),
    )
    if row is None:
        _answer(update, refusal)
        return "refused"
    user = linked.user
    if row.action == Action.REJECT:
        return _reason_ask(update, row, user)
    return _decide(update, row, user, action=row.action)


def _decide(update: Update, row: TelegramCallbackToken, user, *, action: str, reason="") -> str:
    desk = _the_desk()
    who = f"{user.get_username()}" + (f" (@{update.from_name})" if update.from_name else "")
    at = timezone.now().strftime("%H:%M UTC")
    try:
        if not user.is_active:
            raise NotificationError("Your account is disabled.", code="USER_INACTIVE")
        what = desk.act(user=user, proposal_id=row.proposal_id, action=action, reason=reason)
        outcome, line = "done", f"✅ {what} by {who} at {at}"
    except DomainError as error:
        what = f"{error.code}: {error.message}"
        failed = (error.extra or {}).get("failed_codes")
        if failed:
            what += f" ({', '.join(failed)})"
        outcome, line = "refused", f"⛔ {BUTTON_LABELS.get(action, action)} refused: {what}"
    if update.callback_id:
        _answer(update, line)
    _card_edit(user=user, row=row, line=line)
    return outcome


def _card_edit(*, user, row: TelegramCallbackToken, line: str) -> None:
    """The card as it is now, with what just happened, and fresh buttons for what is left."""
    if row.message_id is None:
        return
    card = _the_desk().card(user=user, proposal_id=row.proposal_id)
    if card is None:
        return
    with transaction.atomic():
        _tokens_void(user_id=user.pk, proposal_id=row.proposal_id, chat_id=row.chat_id)
        markup, token_ids = _keyboard(
            user_id=user.pk, proposal_id=row.proposal_id, chat_id=row.chat_id, actions=card.actions
        )
        TelegramCallbackToken.objects.for_user(user).filter(pk__in=token_ids).update(
            message_id=row.message_id
        )
    _bot_api_quiet(
        "editMessageText",
        chat_id=row.chat_id,
        message_id=row.message_id,
        text=_clip(f"{card.text}\n\n{line}"),
        reply_markup=markup,
    )


def _reason_ask(update: Update, row: TelegramCallbackToken, user) -> str:
    """A rejection needs a reason: the bot asks for it; the reply rejects."""
    sent = _say(
        row.chat_id,
        f"Why reject proposal #{row.proposal_id}? Reply with the reason.",
        reply_markup={"force_reply": True, "selective": True},
    )
    TelegramCallbackToken.objects.create(
        user=user,
        token_hash=_sha256(secrets.token_urlsafe(24)),  # never sent: answered by a reply
        proposal_id=row.proposal_id,
        action=Action.REJECT_REASON,
        chat_id=row.chat_id,
        message_id=row.message_id,
        prompt_message_id=sent.get("message_id") if isinstance(sent, dict) else None,
    )
    _answer(update, "Reply with the reason to reject.")
    return "reason_asked"


def _reason_reply(update: Update) -> str:
    linked = _actor(update)
    if linked is None:
        return "ignored"
    scope_narrow_to_user(linked.user)
    prompts = TelegramCallbackToken.objects.for_user(linked.user).filter(
        chat_id=update.chat_id,
        action=Action.REJECT_REASON,
        used_at__isnull=True,
        created_at__gt=timezone.now() - timedelta(minutes=REASON_PROMPT_MINUTES),
    )
    if update.reply_to_message_id is not None:
        prompt = prompts.filter(prompt_message_id=update.reply_to_message_id).first()
    else:
        prompt = prompts.order_by("-created_at").first()
    if prompt is None:
        _say(update.chat_id, "Use the buttons on a card; /stop unlinks this chat.")
        return "ignored"
    row, refusal = _token_take(
        token_hash=prompt.token_hash, linked=linked, actions=[Action.REJECT_REASON]
    )
    if row is None:
        return "refused"
    outcome = _decide(update, row, linked.user, action=Action.REJECT, reason=update.text)
    _say(update.chat_id, "Rejected." if outcome == "done" else "The rejection was refused.")
    return outcome


# --- long polling (manage.py telegram_bot) ------------------------------------------------------


def telegram_poll_offset() -> int | None:
    """Where polling resumes: after the last update handled (None: whatever Telegram has)."""
    last = TelegramUpdate.objects.order_by("-update_id").values_list("update_id", flat=True)
    last = last.first()
    return None if last is None else last + 1


def telegram_poll(*, offset: int | None) -> int | None:
    """One getUpdates (waiting up to TELEGRAM_POLL_TIMEOUT), each update handled; returns
    the next offset, which also tells Telegram these are done."""
    wait = settings.TELEGRAM_POLL_TIMEOUT
    params: dict[str, Any] = {"timeout": wait, "allowed_updates": ["message", "callback_query"]}
    if offset is not None:
        params["offset"] = offset
    updates = bot_api("getUpdates", read_timeout=wait + 10, **params)
    for body in updates if isinstance(updates, list) else []:
        update_id = body.get("update_id") if isinstance(body, dict) else None
        try:
            outcome = telegram_update_handle(body)
            logger.info("telegram update %s: %s", update_id, outcome)
        except Exception:
            # One bad update never stops the bot; it is not handled again (recorded first).
            logger.exception("telegram update %s failed", update_id)
        if type(update_id) is int:
            offset = max(offset or 0, update_id + 1)
    return offset
