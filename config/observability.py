"""/healthz and /metrics.

Metrics are read from the database at scrape time, so every process (web, workers, beat)
is counted the same way, with no per-process counters to merge.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from config.scoping import system_scope_view
from trading.models import TradeExecution


def healthz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"error: {error.__class__.__name__}"
    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
            connect_timeout=2,
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as error:
        checks["broker"] = f"error: {error.__class__.__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503
    )


class DatabaseCollector:
    """Gauges computed from the tables that are the source of truth."""

    def collect(self):
        executions = GaugeMetricFamily(
            "oracle_executions",
            "Executions by status and error code",
            labels=["status", "error_code"],
        )
        for row in TradeExecution.objects.values("status", "error_code").annotate(n=Count("id")):
            executions.add_metric([row["status"], row["error_code"]], row["n"])
        yield executions

        oldest = TradeExecution.objects.filter(status=TradeExecution.Status.SUBMITTING).aggregate(
            oldest=Min("submitting_at")
        )["oldest"]
        age = GaugeMetricFamily(
            "oracle_submitting_oldest_age_seconds", "Age of the oldest SUBMITTING execution"
        )
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0)
        yield age


@system_scope_view
def metrics(request):
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
