import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("oracle")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def log_through_settings(**kwargs):
    """Workers and beat log through settings.LOGGING (JSON lines in production) instead of
    Celery's own handlers: connecting this signal is how Celery is told to leave logging be."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@signals.worker_init.connect
def refuse_to_start_with_the_wrong_key(**kwargs):
    """A scan worker whose key can trade, or an execute worker without a working trade key,
    does not start: key separation is checked, not assumed."""
    role = os.environ.get("ORACLE_ROLE", "")
    if role not in ("scan", "execute"):
        return
    from django.core.management import call_command
    from django.core.management.base import CommandError

    try:
        call_command("exchange_check", role=role)
    except CommandError as error:
        # SystemExit, not an exception: Celery logs and ignores exceptions from handlers.
        raise SystemExit(f"Refusing to start the {role} worker: {error}") from None
