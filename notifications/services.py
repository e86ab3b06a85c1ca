"""Notifications for an absent human: a signed webhook and/or an e-mail per user.

Three steps, each away from trading's path:

1. `notification_enqueue` (called by trading, scans and the console) registers an after-commit
   publish of the event's ids to the `notify` queue. It runs no SQL and never raises: a
   broker that cannot take the message loses this notification, never the caller's work.
2. The notify worker (`notification_event_handle`) reads what the event is about, builds the
   payload and creates one delivery row per destination (unique per user, channel and event
   key, so a redelivered event creates nothing twice), then queues each delivery.
3. `notification_deliver` makes one attempt, records it on the row, and says when to try
   again (exponential back-off) until NOTIFY_MAX_ATTEMPTS, then FAILED.

Telegram messages and decision cards: notifications/telegram.py.

Webhooks are JSON POSTs signed with HMAC-SHA256 under the user's own secret over
`<timestamp>.<exact body bytes>` (headers X-Oracle-Timestamp and X-Oracle-Signature).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import kombu.pools
import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import URLValidator, validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from notifications.errors import NotificationSettingsInvalid
from notifications.models import (
    NotificationDelivery,
    NotificationEvent,
    NotificationSettings,
    all_notification_events,
)
from notifications.telegram import telegram_deliver, telegram_enabled

logger = logging.getLogger(__name__)

EVENT_TASK = "trading.tasks.notify_event"
DELIVER_TASK = "trading.tasks.notify_deliver"
# Below the broker's visibility timeout, so a retry waiting in a worker is not redelivered.
MAX_BACKOFF_SECONDS = 600
MAX_URL_LENGTH = 500
Event = NotificationEvent
Delivery = NotificationDelivery


# --- 1. enqueue (in the caller's process: no SQL, never raises) ------------------------------


def notification_enqueue(*, event: str, user_id: int | None, **facts: Any) -> None:
    """Publishes the event to the notify queue once the current transaction commits (at once
    outside one). `facts` are ids and small JSON values; the notify worker reads the rest."""
    message = {"user_id": user_id, **facts}
    transaction.on_commit(lambda: _publish(EVENT_TASK, [event, message]))


# One try, one second: an unreachable broker costs the caller that much, never the default
# reconnect loop (about 6 s on Redis).
FAST_FAIL_BROKER = {
    "max_retries": 0,
    "connect_retries_timeout": 1,
    "socket_connect_timeout": 1,
    "socket_timeout": 1,
}


@functools.cache
def _broker():
    """The notify publishes' own broker connection settings; kombu pools its connections
    (per process, reset after fork)."""
    from celery import current_app as app  # the project's app (config sits above this app)

    return app, app.connection_for_write(connect_timeout=1, transport_options=FAST_FAIL_BROKER)


def task_publish(task: str, args: list, *, queue: str) -> None:
    """Queues a task by name, failing fast: raises if the broker cannot take it."""
    app, connection = _broker()
    with kombu.pools.producers[connection].acquire(block=True, timeout=1) as producer:
        app.send_task(task, args=args, queue=queue, retry=False, producer=producer)


def _publish(task: str, args: list) -> None:
    try:
        task_publish(task, args, queue="notify")
    except Exception:
        logger.exception("notification not queued: %s %s", task, args)


# --- settings (the user's own, through the API) ----------------------------------------------


def _invalid(code: str, field: str, message: str) -> NotificationSettingsInvalid:
    return NotificationSettingsInvalid(message, code=code, extra={"field": field})


def _webhook_url_clean(value: object) -> str:
    if not isinstance(value, str):
        raise _invalid("WEBHOOK_URL_INVALID", "webhook_url", "The webhook URL must be text.")
    url = value.strip()
    if not url:
        return ""
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(
            "WEBHOOK_URL_TOO_LONG",
            "webhook_url",
            f"The webhook URL may have at most {MAX_URL_LENGTH} characters.",
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port over 65535 or not a number
    except ValueError:
        raise _invalid(
            "WEBHOOK_URL_INVALID", "webhook_url", "The webhook URL is not a valid URL."
        ) from None
    scheme = parts.scheme
    if scheme.lower() not in ("http", "https") or url[len(scheme) : len(scheme) + 3] != "://":
        raise _invalid(
            "WEBHOOK_URL_NOT_HTTP", "webhook_url", "The webhook URL must start with http(s)://."
        )
    url = scheme.lower() + url[len(scheme) :]
    if _private_target(url):
        raise _invalid(
            "WEBHOOK_URL_PRIVATE",
            "webhook_url",
            "The webhook URL points at a private, loopback or link-local address.",
        )
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise _invalid(
            "WEBHOOK_URL_INVALID", "webhook_url", "The webhook URL is not a valid URL."
        ) from None
    return url


def _private_target(url: str) -> bool:
    """True when private webhook targets are not allowed (NOTIFY_ALLOW_PRIVATE_WEBHOOKS) and
    the URL's host is, or resolves to, an address that is not global: the notify worker must
    not be a way into the internal network."""
    if settings.NOTIFY_ALLOW_PRIVATE_WEBHOOKS:
        return False
    try:
        host = urlsplit(url).hostname or ""
        addresses = {
            info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        }
    except (OSError, ValueError):
        return False  # unresolvable now: the POST fails on its own
    return any(not ipaddress.ip_address(address).is_global for address in addresses)


def _email_clean(value: object) -> str:
    email = value.strip() if isinstance(value, str) else None
    if email:
        try:
            validate_email(email)
        except ValidationError:
            email = None
    if email is None:
        raise _invalid("EMAIL_INVALID", "email", "The e-mail address is not valid.")
    return email


def _events_clean(value: object) -> list[str]:
    known = all_notification_events()
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise _invalid("NOTIFICATION_EVENTS_INVALID", "events", "events must be a list of names.")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise NotificationSettingsInvalid(
            f"Unknown events: {', '.join(unknown)}. Known: {', '.join(known)}.",
            code="NOTIFICATION_EVENT_UNKNOWN",
            extra={"field": "events", "unknown": unknown},
        )
    return [e for e in known if e in value]


def notification_settings_update(
    *, user, webhook_url: object = None, email: object = None, events: object = None
) -> NotificationSettings:
    """Changes what is given; "" clears a destination. The first save generates the secret."""
    changes: dict[str, Any] = {}
    if webhook_url is not None:
        changes["webhook_url"] = _webhook_url_clean(webhook_url)
    if email is not None:
        changes["email"] = _email_clean(email) if email != "" else ""
    if events is not None:
        changes["events"] = _events_clean(events)
    with transaction.atomic():
        row, _ = _settings_lock(user)
        for name, value in changes.items():
            setattr(row, name, value)
        row.save()
    return row


def _settings_lock(user) -> tuple[NotificationSettings, bool]:
    """The user's settings row, locked; created with a fresh secret on first use."""
    return (
        NotificationSettings.objects.for_user(user)
        .select_for_update()
        .get_or_create(user=user, defaults={"webhook_secret": secrets.token_hex(32)})
    )


def notification_secret_rotate(*, user) -> NotificationSettings:
    """A new webhook secret; deliveries from now on (retries included) are signed with it."""
    with transaction.atomic():
        row, created = _settings_lock(user)
        if not created:
            row.webhook_secret = secrets.token_hex(32)
            row.save(update_fields=["webhook_secret", "updated_at"])
    return row


# --- 2. the event, in the notify worker -------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """What one event says: the same for every destination of a user."""

    key: str  # what it is about; one delivery per user, channel and key
    subject: str
    data: dict[str, Any]
    occurred_at: str


def console_url(viewname: str, object_id: int) -> str:
    return settings.CONSOLE_BASE_URL.rstrip("/") + reverse(viewname, args=[object_id])


def _kill_switch(facts: dict) -> Notice:
    state = "ON" if facts["trading_enabled"] else "OFF (kill switch)"
    return Notice(
        key=f"kill_switch:{facts['at']}",
        subject=f"Trading turned {state}",
        data={"trading_enabled": facts["trading_enabled"], "actor_id": facts.get("actor_id")},
        occurred_at=facts["at"],
    )


def _emergency_stop(facts: dict) -> Notice:
    state = "ACTIVE: every execution is halted" if facts["active"] else "off"
    return Notice(
        key=f"emergency_stop:{facts['at']}",
        subject=f"Emergency stop {state}",
        data={
            "active": facts["active"],
            "reason": facts.get("reason", ""),
            "actor_id": facts.get("actor_id"),
        },
        occurred_at=facts["at"],
    )


def _budget_exhausted(facts: dict) -> Notice:
    # One notice per user, limit and window: the day, or the clock hour for the hourly limit.
    window = facts["at"][:10] if facts["code"] == "DAILY_BUDGET_EXHAUSTED" else facts["at"][:13]
    return Notice(
        key=f"budget:{facts['code']}:{window}",
        subject=f"LLM budget ran out ({facts['code']}); scans are rescheduled",
        data={name: facts.get(name) for name in ("code", "message", "scan_job_id", "limits")},
        occurred_at=facts["at"],
    )


def _scan_lock_recovered(facts: dict) -> Notice:
    return Notice(
        key=f"scan_lock:{facts['job_id']}:{facts['expired_at']}",
        subject=f"Scan job #{facts['job_id']}: an expired lock was recovered",
        data={name: facts.get(name) for name in ("job_id", "holder", "expired_at", "recovered_by")},
        occurred_at=facts["at"],
    )


def _daily_summary(facts: dict) -> Notice:
    # The figures were computed by the sender (portfolio); one notice per user and day.
    summary = facts["summary"]
    trades, pnl = summary["trades"], summary["pnl"]
    since = pnl["since_day_start_eur"]
    return Notice(
        key=f"daily_summary:{summary['day']}",
        subject=(
            f"Daily summary {summary['day']}: {trades['fills']} trades, PnL "
            f"{since + ' EUR' if since is not None else 'unknown'}, "
            f"{summary['proposals_pending']} proposals pending"
        ),
        data={**summary, "url": settings.CONSOLE_BASE_URL.rstrip("/") + reverse("admin-portfolio")},
        occurred_at=summary["portfolio"]["valued_at"],
    )


# How each event reads. The events about trading's own rows are added by trading
# (trading/notices.py, through `notice_builder`): this app reads no other app's tables.
NOTICE_BUILDERS: dict[str, Callable[[dict], Notice | None]] = {
    Event.KILL_SWITCH: _kill_switch,
    Event.EMERGENCY_STOP: _emergency_stop,
    Event.BUDGET_EXHAUSTED: _budget_exhausted,
    Event.SCAN_LOCK_RECOVERED: _scan_lock_recovered,
    Event.DAILY_SUMMARY: _daily_summary,
}


def notice_builder(event: str):
    """Registers the function that reads an event's facts into a Notice (None: nothing to
    say, its object is gone)."""

    def register(build: Callable[[dict], Notice | None]):
        NOTICE_BUILDERS[event] = build
        return build

    return register


def _telegram_on(row: NotificationSettings) -> bool:
    # Without a bot token the feature is off: nothing is queued for a linked chat.
    return row.telegram_linked and telegram_enabled()


def notification_event_handle(*, event: str, facts: dict) -> list[int]:
    """Creates the deliveries of one event (for one user, or every user for the emergency
    stop) and queues those never tried yet. Returns their ids."""
    user_id = facts.get("user_id")
    recipients = NotificationSettings.objects.all()
    if user_id is not None:
        recipients = recipients.filter(user_id=user_id)
    recipients = [
        row
        for row in recipients
        if event in row.events and (row.webhook_url or row.email or _telegram_on(row))
    ]
    if not recipients:
        return []
    notice = NOTICE_BUILDERS[event](facts)
    if notice is None:
        logger.info("notification %s skipped: its object is gone or unfinished", event)
        return []
    to_send = []
    with transaction.atomic():
        for row in recipients:
            payload = {
                "event": event,
                "occurred_at": notice.occurred_at,
                "user_id": row.user_id,
                "subject": notice.subject,
                "data": notice.data,
            }
            for channel, destination in (
                (Delivery.Channel.WEBHOOK, row.webhook_url),
                (Delivery.Channel.EMAIL, row.email),
                (
                    Delivery.Channel.TELEGRAM,
                    str(row.telegram_chat_id) if _telegram_on(row) else "",
                ),
            ):
                if not destination:
                    continue
                delivery, _ = Delivery.objects.get_or_create(
                    user_id=row.user_id,
                    channel=channel,
                    dedupe_key=notice.key,
                    defaults={
                        "event": event,
                        "destination": destination,
                        "subject": notice.subject[:200],
                        "payload": payload,
                    },
                )
                # Also one a crashed handler created but never queued.
                if delivery.status == Delivery.Status.PENDING and delivery.attempt_count == 0:
                    to_send.append(delivery.pk)
        for delivery_id in to_send:
            transaction.on_commit(lambda pk=delivery_id: _publish(DELIVER_TASK, [pk]))
    return to_send


# --- 3. one attempt ---------------------------------------------------------------------------


def webhook_body(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>`: what X-Oracle-Signature carries after sha256=."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    status_code: int | None = None
    error: str = ""


def _webhook_post(delivery: NotificationDelivery) -> Attempt:
    secret = (
        NotificationSettings.objects.filter(user_id=delivery.user_id)
        .values_list("webhook_secret", flat=True)
        .first()
    )
    if not secret:
        return Attempt(False, error="NOTIFICATION_SETTINGS_GONE: the user has no settings now.")
    # Checked again when sending: the name may resolve elsewhere than when it was saved.
    if _private_target(delivery.destination):
        return Attempt(False, error="WEBHOOK_URL_PRIVATE: the host resolves to a private address.")
    body = webhook_body(delivery.payload)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "auto-invest-oracle-notify",
        "X-Oracle-Event": delivery.event,
        "X-Oracle-Delivery": str(delivery.pk),
        "X-Oracle-Timestamp": timestamp,
        "X-Oracle-Signature": "sha256="
        + webhook_signature(secret=secret, timestamp=timestamp, body=body),
    }
    try:
        with requests.post(
            delivery.destination,
            data=body,
            headers=headers,
            timeout=(settings.NOTIFY_CONNECT_TIMEOUT, settings.NOTIFY_READ_TIMEOUT),
            allow_redirects=False,
        ) as response:
            if 200 <= response.status_code < 300:
                return Attempt(True, response.status_code)
            return Attempt(
                False, response.status_code, f"HTTP {response.status_code}: {response.text[:300]}"
            )
    except requests.RequestException as error:
        return Attempt(False, error=f"{type(error).__name__}: {error}"[:500])


def email_text(payload: dict) -> str:
    lines = [payload["subject"], ""]
    for name, value in payload["data"].items():
        if isinstance(value, dict):
            lines += [f"{name}:"] + [f"  {key}: {item}" for key, item in value.items()]
        else:
            lines.append(f"{name}: {value}")
    lines += ["", f"event: {payload['event']} at {payload['occurred_at']}"]
    return "\n".join(lines)


def _email_send(delivery: NotificationDelivery) -> Attempt:
    try:
        send_mail(
            subject=f"[Auto Invest Oracle] {delivery.subject}",
            message=email_text(delivery.payload),
            from_email=None,
            recipient_list=[delivery.destination],
        )
    except Exception as error:
        return Attempt(False, error=f"{type(error).__name__}: {error}"[:500])
    return Attempt(True)


def notification_retry_delay(*, attempts: int) -> float:
    """After the n-th failed attempt: BACKOFF * 2**(n-1), capped."""
    return min(settings.NOTIFY_RETRY_BACKOFF_SECONDS * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)


def notification_deliver(*, delivery_id: int) -> float | None:
    """One attempt, recorded on the row. Returns the seconds until the next attempt, or None
    when the delivery is finished (DELIVERED, FAILED after the limit, or not pending)."""
    delivery = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING).first()
    if delivery is None:
        return None
    started, at = time.monotonic(), timezone.now()
    if delivery.channel == Delivery.Channel.WEBHOOK:
        attempt = _webhook_post(delivery)
    elif delivery.channel == Delivery.Channel.TELEGRAM:
        delivered, error = telegram_deliver(delivery)
        attempt = Attempt(delivered, error=error)
    else:
        attempt = _email_send(delivery)
    count = delivery.attempt_count + 1
    if attempt.delivered:
        status = Delivery.Status.DELIVERED
    elif count >= settings.NOTIFY_MAX_ATTEMPTS:
        status = Delivery.Status.FAILED
    else:
        status = Delivery.Status.PENDING
    record = {
        "at": at.isoformat(),
        "outcome": "delivered" if attempt.delivered else "failed",
        "status_code": attempt.status_code,
        "error": attempt.error,
        "duration_ms": round((time.monotonic() - started) * 1000),
    }
    now = timezone.now()
    # Compare-and-set on the attempt count: a duplicate task cannot record the same attempt.
    Delivery.objects.filter(pk=delivery.pk, attempt_count=delivery.attempt_count).update(
        status=status,
        attempt_count=count,
        attempts=[*delivery.attempts, record],
        last_error=attempt.error,
        finished_at=None if status == Delivery.Status.PENDING else now,
        updated_at=now,
    )
    if status == Delivery.Status.PENDING:
        return notification_retry_delay(attempts=count)
    if status == Delivery.Status.FAILED:
        logger.warning("notification %s failed after %s attempts", delivery.pk, count)
    return None
