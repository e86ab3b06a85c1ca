from django.contrib import admin

from core.admin import ReadOnlyAdmin
from notifications.models import NotificationDelivery, NotificationSettings


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(ReadOnlyAdmin):
    """Users change their own settings through the API; staff see them here."""

    list_display = ("user", "webhook_url", "email", "telegram_chat_id", "events", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "email", "webhook_url")
    fields = (
        "user",
        "webhook_url",
        "secret_hint",
        "email",
        "telegram_chat_id",
        "telegram_user_id",
        "telegram_linked_at",
        "events",
        "created_at",
        "updated_at",
    )

    @admin.display(description="webhook secret")
    def secret_hint(self, row: NotificationSettings) -> str:
        # Enough to tell secrets apart, not enough to sign with.
        return f"{row.webhook_secret[:6]}…" if row.webhook_secret else "-"


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "user",
        "event",
        "channel",
        "destination",
        "status",
        "attempt_count",
        "last_error",
    )
    list_filter = ("status", "event", "channel")
    list_select_related = ("user",)
    search_fields = ("user__username", "destination", "subject", "dedupe_key")
    date_hierarchy = "created_at"
