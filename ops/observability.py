"""/healthz and /metrics.

Metrics are read at scrape time from the database (and, for the few events no table
records, from counters shared in the cache), so every process (web, workers, beat) is
counted the same way, with no per-process counters to merge.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Min, Q, Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from budget.models import GptUsageLog
from core.counters import COUNTERS, counter_values
from core.scoping import system_scope_view
from exchange.models import ExchangeCall
from exchange.transport import rate_limit_role_key
from scheduler.models import ScanJob
from trading.models import ProposalEvent, TradeExecution


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


# Buckets of the exchange-call latency histogram, in seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KEY_ROLES = ("public", "readonly", "trade")

# The codes of refused preflights, one row per code per refusal (PostgreSQL, SQLite).
PREFLIGHT_REJECTIONS_SQL = {
    "postgresql": (
        "SELECT code, COUNT(*) FROM trade_proposal_events e "
        "CROSS JOIN LATERAL jsonb_array_elements_text(e.data->'failed_codes') AS code "
        "WHERE e.kind = %s GROUP BY code"
    ),
    "sqlite": (
        "SELECT j.value, COUNT(*) FROM trade_proposal_events e, "
        "json_each(e.data, '$.failed_codes') j WHERE e.kind = %s GROUP BY j.value"
    ),
}
# Exchange calls by endpoint: the path without its query (which carries order ids).
EXCHANGE_CALLS_SQL = {
    "postgresql": "split_part(path, '?', 1)",
    "sqlite": "CASE WHEN instr(path, '?') > 0 THEN substr(path, 1, instr(path, '?') - 1) "
    "ELSE path END",
}


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class DatabaseCollector:
    """Gauges and counters computed from the tables that are the source of truth, plus the
    shared rate-limit state and event counters in the cache. Nothing is held per process, so
    any web process answers for all of them."""

    def collect(self):
        yield from self._executions()
        yield from self._preflight()
        yield from self._exchange()
        yield from self._scans()
        yield from self._llm()

    def _executions(self):
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

    def _preflight(self):
        rejections = CounterMetricFamily(
            "oracle_preflight_rejections",
            "Preflight rules that refused an execute, by code",
            labels=["code"],
        )
        sql = PREFLIGHT_REJECTIONS_SQL[connection.vendor]
        for code, n in _rows(sql, [ProposalEvent.Kind.PREFLIGHT_FAILED]):
            rejections.add_metric([code], n)
        yield rejections

    def _exchange(self):
        calls = CounterMetricFamily(
            "oracle_exchange_calls",
            "Audited exchange calls (orders, lookups, cancels) by endpoint and outcome; "
            "status is the HTTP status, or the error code when no answer came",
            labels=["key_role", "method", "endpoint", "status"],
        )
        endpoint = EXCHANGE_CALLS_SQL[connection.vendor]
        sql = (
            f"SELECT key_role, method, {endpoint}, "  # noqa: S608 - fixed SQL per vendor
            "COALESCE(CAST(status_code AS TEXT), NULLIF(error_code, ''), 'none'), COUNT(*) "
            "FROM exchange_calls GROUP BY 1, 2, 3, 4"
        )
        for role, method, path, status, n in _rows(sql, []):
            calls.add_metric([role, method, path, status], n)
        yield calls

        latency = HistogramMetricFamily(
            "oracle_exchange_call_latency_seconds",
            "Latency of audited exchange calls",
            labels=["key_role"],
        )
        buckets = {
            f"le_{i}": Count("id", filter=Q(latency_ms__lte=bound * 1000))
            for i, bound in enumerate(LATENCY_BUCKETS)
        }
        rows = ExchangeCall.objects.values("key_role").annotate(
            n=Count("id"), total_ms=Sum("latency_ms"), **buckets
        )
        for row in rows:
            cumulative = [
                (str(bound), row[f"le_{i}"]) for i, bound in enumerate(LATENCY_BUCKETS)
            ] + [("+Inf", row["n"])]
            latency.add_metric([row["key_role"]], cumulative, (row["total_ms"] or 0) / 1000)
        yield latency

        remaining = GaugeMetricFamily(
            "oracle_exchange_ratelimit_remaining",
            "Rate-limit points left this minute, as the exchange last said, by key role",
            labels=["key_role"],
        )
        limit = GaugeMetricFamily(
            "oracle_exchange_ratelimit_limit",
            "Rate-limit points a minute, as the exchange last said, by key role",
            labels=["key_role"],
        )
        states = cache.get_many([rate_limit_role_key(role) for role in KEY_ROLES])
        for role in KEY_ROLES:
            state = states.get(rate_limit_role_key(role)) or {}
            if "remaining" in state:
                remaining.add_metric([role], state["remaining"])
            if "limit" in state:
                limit.add_metric([role], state["limit"])
        yield remaining
        yield limit

    def _scans(self):
        now = timezone.now()
        jobs = GaugeMetricFamily(
            "oracle_scan_jobs",
            "Scan jobs by lease state (an expired lease is one whose holder died or overran)",
            labels=["state", "enabled"],
        )
        leased = Q(lock_token__isnull=False)
        rows = ScanJob.objects.values("enabled").annotate(
            free=Count("id", filter=~leased),
            leased=Count("id", filter=leased & Q(lock_expires_at__gt=now)),
            lease_expired=Count("id", filter=leased & Q(lock_expires_at__lte=now)),
            failing=Count("id", filter=Q(consecutive_failures__gt=0)),
        )
        for row in rows:
            for state in ("free", "leased", "lease_expired", "failing"):
                jobs.add_metric([state, str(row["enabled"]).lower()], row[state])
        yield jobs

        for name, value in counter_values().items():
            counter = CounterMetricFamily(f"oracle_{name}", COUNTERS[name])
            counter.add_metric([], value)
            yield counter

    def _llm(self):
        calls = CounterMetricFamily(
            "oracle_llm_calls",
            "LLM calls by outcome (RESERVED: in flight; REFUSED: turned down by the budget)",
            labels=["status", "model"],
        )
        tokens = CounterMetricFamily(
            "oracle_llm_tokens", "LLM tokens used, as reported", labels=["kind", "model"]
        )
        rows = GptUsageLog.objects.values("status", "model").annotate(
            n=Count("id"),
            prompt=Sum("prompt_tokens", default=0),
            completion=Sum("completion_tokens", default=0),
        )
        used: dict[tuple[str, str], int] = {}
        for row in rows:
            calls.add_metric([row["status"], row["model"]], row["n"])
            for kind in ("prompt", "completion"):
                key = (kind, row["model"])
                used[key] = used.get(key, 0) + row[kind]
        for (kind, model), n in used.items():
            tokens.add_metric([kind, model], n)
        yield calls
        yield tokens

        refusals = CounterMetricFamily(
            "oracle_llm_budget_refusals",
            "LLM calls the budget refused, by code",
            labels=["code"],
        )
        refused = GptUsageLog.objects.filter(status=GptUsageLog.Status.REFUSED)
        for row in refused.values("error").annotate(n=Count("id")):
            refusals.add_metric([row["error"]], row["n"])
        yield refusals


def metrics_caller_allowed(request) -> bool:
    """`Authorization: Bearer <METRICS_BEARER_TOKEN>`; with no token set, only under DEBUG."""
    expected = settings.METRICS_BEARER_TOKEN
    if not expected:
        return settings.DEBUG
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected.encode())


@system_scope_view
def metrics(request):
    if not metrics_caller_allowed(request):
        # Business figures: only for the scraper that holds the token.
        response = JsonResponse(
            {
                "code": "METRICS_TOKEN_REQUIRED",
                "message": "/metrics needs Authorization: Bearer <METRICS_BEARER_TOKEN>.",
                "extra": {},
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
