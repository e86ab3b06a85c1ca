from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations, above every app: health, metrics, the dashboard and the report."""

    name = "ops"
