"""Where a user's notifications go, and each delivery with every attempt.

The tables keep their names from when these models lived in trading.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.scoping import UserOwnedQuerySet


class NotificationEvent(models.TextChoices):
    PROPOSAL_PENDING = "proposal_pending", "A proposal awaits approval"
    EXECUTION_ENDED = "execution_ended", "An execution ended (SUBMITTED or FAILED)"
    KILL_SWITCH = "kill_switch", "The user's kill switch was flipped"
    EMERGENCY_STOP = "emergency_stop", "The operator emergency stop was flipped"
    BUDGET_EXHAUSTED = "budget_exhausted", "The LLM budget ran out"
    SCAN_LOCK_RECOVERED = "scan_lock_recovered", "A scan lock was recovered"
    DAILY_SUMMARY = "daily_summary", "The day's trades and profit (a daily heartbeat)"


def all_notification_events() -> list[str]:
    return list(NotificationEvent.values)


class NotificationSettings(models.Model):
    """Where a user's notifications go: a signed webhook and/or an e-mail address."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    webhook_url = models.URLField(max_length=500, blank=True)
    # The HMAC-SHA256 key of this user's webhook signatures; generated, never chosen.
    webhook_secret = models.CharField(max_length=64)
    email = models.EmailField(blank=True)
    # The Telegram chat a one-time code linked, and the one Telegram user who may act in it.
    telegram_chat_id = models.BigIntegerField(null=True, blank=True)
    telegram_user_id = models.BigIntegerField(null=True, blank=True)
    telegram_linked_at = models.DateTimeField(null=True, blank=True)
    # The events this user wants; all of them by default.
    events = models.JSONField(default=all_notification_events, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "notification_settings"
        verbose_name_plural = "notification settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(webhook_url="")
                | Q(webhook_url__startswith="http://")
                | Q(webhook_url__startswith="https://"),
                name="notification_settings_webhook_http",
                violation_error_code="WEBHOOK_URL_NOT_HTTP",
                violation_error_message="The webhook URL must start with http(s)://.",
            ),
            models.CheckConstraint(
                condition=Q(telegram_chat_id__isnull=True, telegram_user_id__isnull=True)
                | Q(
                    telegram_chat_id__isnull=False,
                    telegram_user_id__isnull=False,
                    telegram_linked_at__isnull=False,
                ),
                name="notification_settings_telegram_link_whole",
                violation_error_code="TELEGRAM_LINK_PARTIAL",
            ),
            # A chat speaks for one user: whose proposals a tap acts on is never ambiguous.
            models.UniqueConstraint(
                fields=["telegram_chat_id"],
                name="notification_settings_telegram_chat_once",
                violation_error_code="TELEGRAM_CHAT_LINKED",
            ),
        ]

    def __str__(self) -> str:
        return f"Notifications of {self.user}"

    @property
    def telegram_linked(self) -> bool:
        return self.telegram_chat_id is not None


class NotificationDelivery(models.Model):
    """One notification to one destination, with every attempt to deliver it."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"
        TELEGRAM = "telegram"

    class Status(models.TextChoices):
        PENDING = "PENDING"
        DELIVERED = "DELIVERED"
        FAILED = "FAILED"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_deliveries"
    )
    event = models.CharField(max_length=32, choices=NotificationEvent.choices)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    destination = models.CharField(max_length=500)
    # What the event is about ("execution:42"): a redelivered event creates nothing twice.
    dedupe_key = models.CharField(max_length=200)
    subject = models.CharField(max_length=200)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    # [{"at", "outcome", "status_code", "error", "duration_ms"}], one entry per attempt.
    attempts = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "notification_deliveries"
        verbose_name_plural = "notification deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "channel", "dedupe_key"],
                name="notification_deliveries_once",
                violation_error_code="NOTIFICATION_EXISTS",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "DELIVERED", "FAILED"]),
                name="notification_deliveries_status_valid",
                violation_error_code="NOTIFICATION_STATUS_INVALID",
            ),
            models.CheckConstraint(
                condition=Q(status="PENDING") | Q(finished_at__isnull=False),
                name="notification_deliveries_finished_time_recorded",
                violation_error_code="NOTIFICATION_FINISH_TIME_MISSING",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="notification_deliveries_user"),
            # The admin's date filter; the retention sweep of delivered rows.
            models.Index(fields=["created_at"], name="notification_deliv_created"),
            models.Index(
                fields=["finished_at"],
                condition=Q(status="DELIVERED"),
                name="notification_deliv_done",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.channel} to {self.destination} ({self.status})"


class TelegramLinkCode(models.Model):
    """A one-time code that links the chat sending `/start <code>` to the user; only its
    SHA-256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="telegram_link_codes"
    )
    code_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "telegram_link_codes"

    def __str__(self) -> str:
        return f"Telegram link code of {self.user_id} (until {self.expires_at})"


class TelegramCallbackToken(models.Model):
    """What one button on one card may do: the button carries only a random token, this row
    says whose proposal, which action and in which chat. Used once; only its SHA-256 is
    stored, so the table cannot forge a button either."""

    class Action(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"
        EXECUTE = "execute"
        # Not a button: the prompt asking for a rejection's reason, answered by a reply.
        REJECT_REASON = "reject_reason"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="telegram_tokens"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    proposal_id = models.BigIntegerField()
    action = models.CharField(max_length=16, choices=Action.choices)
    chat_id = models.BigIntegerField()
    # The card's message (known once it was sent), and for REJECT_REASON the prompt's.
    message_id = models.BigIntegerField(null=True, blank=True)
    prompt_message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "telegram_callback_tokens"
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=["approve", "reject", "execute", "reject_reason"]),
                name="telegram_callback_tokens_action_valid",
                violation_error_code="TELEGRAM_ACTION_INVALID",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "proposal_id"], name="telegram_tokens_proposal"),
        ]

    def __str__(self) -> str:
        return f"{self.action} proposal #{self.proposal_id} in chat {self.chat_id}"


class TelegramUpdate(models.Model):
    """Each Telegram update handled, by its id: a resent or replayed update (a restarted
    poller, a webhook retried) is handled once."""

    update_id = models.BigIntegerField(primary_key=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "telegram_updates"

    def __str__(self) -> str:
        return f"Telegram update {self.update_id}"
