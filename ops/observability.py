"""/healthz and /metrics.

Metrics are counters every process adds to as the work happens (core.counters, shared in
the cache) and a few gauges over small indexed sets, so a scrape's cost does not grow with
history and every process (web, workers, beat) is counted the same way.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Min, Q
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from budget.models import GptUsageLog
from core.counters import COUNTERS, counter_series, counter_values
from core.scoping import system_scope_view
from exchange.transport import LATENCY_BUCKETS, clock_offset_known, rate_limit_role_key
from ops.report import holdings_balances, market_price
from scheduler.models import ScanJob
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


KEY_ROLES = ("public", "readonly", "trade")
LIVE = (TradeExecution.Status.CLAIMED, TradeExecution.Status.SUBMITTING)


class DatabaseCollector:
    """Counters added to as the work happens (core.counters, shared in the cache) and gauges
    read from small indexed sets (in-flight executions and calls, scan jobs): a scrape costs
    the same with a thousand rows of history or a hundred million, and what retention prunes
    is still counted. Nothing is held per process, so any web process answers for all."""

    def collect(self):
        yield from self._executions()
        yield from self._preflight()
        yield from self._exchange()
        yield from self._scans()
        yield from self._llm()
        yield from self._holdings()

    def _executions(self):
        executions = GaugeMetricFamily(
            "oracle_executions",
            "Executions in flight (CLAIMED, SUBMITTING) by status and error code",
            labels=["status", "error_code"],
        )
        # The few live rows, through the partial index trade_executions_live.
        live = TradeExecution.objects.filter(status__in=LIVE)
        for row in live.values("status", "error_code").annotate(n=Count("id")):
            executions.add_metric([row["status"], row["error_code"]], row["n"])
        yield executions

        ended = CounterMetricFamily(
            "oracle_executions_ended",
            "Executions that ended (SUBMITTED, FAILED), by status and error code",
            labels=["status", "error_code"],
        )
        for labels, n in counter_series("executions_ended").items():
            ended.add_metric(list(labels), n)
        yield ended

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
        for (code,), n in counter_series("preflight_rejections").items():
            rejections.add_metric([code], n)
        yield rejections

    def _exchange(self):
        calls = CounterMetricFamily(
            "oracle_exchange_calls",
            "Audited exchange calls (orders, lookups, cancels) by endpoint and outcome; "
            "status is the HTTP status, or the error code when no answer came",
            labels=["key_role", "method", "endpoint", "status"],
        )
        for labels, n in counter_series("exchange_calls").items():
            calls.add_metric(list(labels), n)
        yield calls

        latency = HistogramMetricFamily(
            "oracle_exchange_call_latency_seconds",
            "Latency of audited exchange calls",
            labels=["key_role"],
        )
        in_bucket = counter_series("exchange_call_latency_bucket")
        counts = counter_series("exchange_call_latency_count")
        sums = counter_series("exchange_call_latency_ms_sum")
        for (role,), total in sorted(counts.items()):
            cumulative, running = [], 0
            for bound in LATENCY_BUCKETS:
                running += in_bucket.get((role, str(bound)), 0)
                cumulative.append((str(bound), running))
            cumulative.append(("+Inf", total))
            latency.add_metric([role], cumulative, sums.get((role,), 0) / 1000)
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

        offset = GaugeMetricFamily(
            "oracle_exchange_clock_offset_ms",
            "The exchange's clock minus ours, as last measured; compensated in every signed "
            "request (a worker warns above a second)",
        )
        seen = clock_offset_known()
        if seen is not None:
            offset.add_metric([], seen)
        yield offset

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
            "LLM calls by outcome once known (SUCCEEDED, FAILED; REFUSED: turned down by the "
            "budget)",
            labels=["status", "model"],
        )
        for labels, n in counter_series("llm_calls").items():
            calls.add_metric(list(labels), n)
        yield calls

        tokens = CounterMetricFamily(
            "oracle_llm_tokens", "LLM tokens used, as reported", labels=["kind", "model"]
        )
        for labels, n in counter_series("llm_tokens").items():
            tokens.add_metric(list(labels), n)
        yield tokens

        # The few open reservations, read through the partial index gpt_usage_log_reserved.
        in_flight = GaugeMetricFamily(
            "oracle_llm_calls_in_flight", "LLM calls admitted and not closed yet (RESERVED)"
        )
        in_flight.add_metric(
            [], GptUsageLog.objects.filter(status=GptUsageLog.Status.RESERVED).count()
        )
        yield in_flight

        refusals = CounterMetricFamily(
            "oracle_llm_budget_refusals",
            "LLM calls the budget refused, by code",
            labels=["code"],
        )
        for (code,), n in counter_series("llm_budget_refusals").items():
            refusals.add_metric([code], n)
        yield refusals

    def _holdings(self):
        difference = GaugeMetricFamily(
            "oracle_holdings_difference",
            "Per asset, the exchange's balance less every user's holding and the unallocated "
            "funds (in the asset's units; 0 when the parts add up)",
            labels=["asset"],
        )
        alert = GaugeMetricFamily(
            "oracle_holdings_alert",
            "1 when an asset's difference is beyond HOLDINGS_TOLERANCE_EUR or cannot be told",
            labels=["asset"],
        )
        for line in holdings_balances(price_of=market_price):
            if line.difference is not None:
                difference.add_metric([line.asset], float(line.difference))
            alert.add_metric([line.asset], 1 if line.alert else 0)
        yield difference
        yield alert


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
