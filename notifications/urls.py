"""Notification API routes, under /api/v1/ (config/urls.py includes them)."""

from django.urls import path

from notifications import apis

urlpatterns = [
    path("notifications/", apis.NotificationSettingsApi.as_view(), name="notifications"),
    path(
        "notifications/secret/",
        apis.NotificationSecretRotateApi.as_view(),
        name="notification-secret",
    ),
    path(
        "notifications/telegram/link/",
        apis.TelegramLinkApi.as_view(),
        name="notification-telegram-link",
    ),
    path(
        "notifications/deliveries/",
        apis.NotificationDeliveryListApi.as_view(),
        name="notification-delivery-list",
    ),
    path(
        "notifications/deliveries/<int:delivery_id>/",
        apis.NotificationDeliveryDetailApi.as_view(),
        name="notification-delivery-detail",
    ),
]

# At the site's root (config/urls.py): where Telegram posts the bot's updates.
webhook_urlpatterns = [
    path(
        "telegram/webhook/<str:secret>",
        apis.TelegramWebhookApi.as_view(),
        name="telegram-webhook",
    ),
]
