"""Notification API routes, under /api/v1/ (config/urls.py includes them)."""

from django.contrib import admin
from django.urls import path

from notifications import apis
from notifications.console import notification_settings_view

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

# At the site's root (config/urls.py): the console page, and where Telegram posts updates.
site_urlpatterns = [
    path(
        "admin/notifications/mine/",
        admin.site.admin_view(notification_settings_view),
        name="admin-notification-settings",
    ),
    path(
        "telegram/webhook/<str:secret>",
        apis.TelegramWebhookApi.as_view(),
        name="telegram-webhook",
    ),
]
