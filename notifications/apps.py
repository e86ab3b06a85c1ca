from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Webhook and e-mail notifications to users; trading and scans tell it what happened."""

    name = "notifications"
