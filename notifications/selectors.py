"""Reads of a user's own notification settings and deliveries."""

from __future__ import annotations

from django.db.models import QuerySet

from notifications.errors import NotificationNotFound
from notifications.models import NotificationDelivery, NotificationSettings


def notification_settings_get(*, user) -> NotificationSettings:
    """The user's settings; without any, the defaults (nothing configured), unsaved."""
    return NotificationSettings.objects.for_user(user).first() or NotificationSettings(user=user)


def notification_delivery_list(*, user) -> QuerySet:
    return NotificationDelivery.objects.for_user(user).order_by("-created_at")


def notification_delivery_get(*, user, delivery_id: int) -> NotificationDelivery:
    delivery = NotificationDelivery.objects.for_user(user).filter(pk=delivery_id).first()
    if delivery is None:
        raise NotificationNotFound(f"No notification #{delivery_id}.")
    return delivery
