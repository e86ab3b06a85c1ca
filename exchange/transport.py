"""The signing HTTP transport for Bitvavo's REST API v2.

It signs exactly the bytes it sends (compact JSON, the query string inside the signed path),
keeps a clock offset learned from GET /time, puts a connect and read timeout on every call,
and turns every answer, JSON or not, into data or one ExchangeError.

The rate-limit budget and any ban are shared by every process using the same key: they live
in the Django cache (Redis in production and tests), keyed by a hash of the API key. While a
key is banned, or its budget for the minute is spent, nothing is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from urllib3.exceptions import ConnectTimeoutError

from core.counters import counter_add
from exchange.call_log import call_log_close, call_log_open
from exchange.errors import (
    ExchangeError,
    ExchangeNotSent,
    ExchangeOutcomeUnknown,
    ExchangeRateLimited,
    ExchangeRejected,
    error_from_response,
)

logger = logging.getLogger(__name__)

BAN_EXPIRY = re.compile(r"expires at (\d+)")
CLOCK_OFFSET_TTL_SECONDS = 600
# The last offset measured by any process, kept for /metrics (the working copy expires).
CLOCK_OFFSET_SEEN_KEY = "bitvavo:clock-offset:last-seen"
MINUTE_MS = 60_000
# How far a request's arrival may be from the time we reserved it at (flight and clock error).
MINUTE_EDGE_MS = 1_000
DEFAULT_LIMIT = 1000  # points a minute, until the exchange's headers say otherwise


def sign(*, secret: str, timestamp: int, method: str, path: str, body: str) -> str:
    """Bitvavo's signature: hex HMAC-SHA256 over timestamp + METHOD + /v2 path (+query) + body."""
    message = f"{timestamp}{method.upper()}{path}{body}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rate_limit_role_key(key_role: str) -> str:
    """Where the last rate-limit headers seen with a key of this role are kept."""
    return f"bitvavo:ratelimit:role:{key_role}"


class RateLimitState:
    """The shared per-key budget: what the exchange said is left, what we spent, any ban.

    Each value has its own cache key, so concurrent writers never overwrite each other's
    news (a ban recorded by one process survives another recording headers).
    """

    def __init__(self, api_key: str | None, *, key_role: str = "public") -> None:
        ident = hashlib.sha256((api_key or "anonymous").encode()).hexdigest()[:16]
        self.prefix = f"bitvavo:ratelimit:{ident}"
        self.key_role = key_role

    def get(self) -> dict:
        """What the exchange last said: limit, remaining, reset_at_ms; and banned_until_ms."""
        state = dict(cache.get(f"{self.prefix}:budget") or {})
        banned_until = cache.get(f"{self.prefix}:ban")
        if banned_until:
            state["banned_until_ms"] = banned_until
        return state

    def record(self, *, limit: int | None, remaining: int | None, reset_at_ms: int | None) -> None:
        state = dict(cache.get(f"{self.prefix}:budget") or {})
        for name, value in (
            ("limit", limit),
            ("remaining", remaining),
            ("reset_at_ms", reset_at_ms),
        ):
            if value is not None:
                state[name] = value
        # Also under the key's role, for /metrics in a process that holds no key (one round
        # trip: set_many pipelines on Redis).
        cache.set_many(
            {f"{self.prefix}:budget": state, rate_limit_role_key(self.key_role): state},
            timeout=3600,
        )

    def ban(self, until_ms: int, *, at_ms: int) -> None:
        seconds = max(1, (until_ms - at_ms) // 1000 + 1)
        cache.set(f"{self.prefix}:ban", until_ms, timeout=seconds)

    def reserve(self, weight: int, *, at_ms: int) -> None:
        """Takes `weight` points of this minute's budget, or raises ExchangeRateLimited.

        The points every process spent in an exchange minute are one counter in the cache
        (atomic in Redis), so several workers on one key stay under the limit together. A
        margin is left for anything else using the key.
        """
        ban = cache.get(f"{self.prefix}:ban") or 0
        if ban > at_ms:
            raise ExchangeRateLimited(
                f"The API key is banned by the exchange until {ban} ms; not sending.",
                code="EXCHANGE_BANNED",
                extra={"retry_after_seconds": (ban - at_ms) / 1000},
            )
        budget = cache.get(f"{self.prefix}:budget") or {}
        limit = budget.get("limit", DEFAULT_LIMIT)
        reset_at = budget.get("reset_at_ms", 0)
        if reset_at > at_ms and budget.get("remaining", limit) < weight:
            raise ExchangeRateLimited(
                f"The exchange says the rate-limit budget is spent until {reset_at} ms.",
                code="EXCHANGE_RATE_LIMITED",
                extra={"retry_after_seconds": (reset_at - at_ms) / 1000},
            )
        # A request counts in every exchange minute it may land in: one sent just before the
        # minute turns (or with our clock a little off) is charged in the next one too.
        edges = (at_ms - MINUTE_EDGE_MS, at_ms + MINUTE_EDGE_MS)
        minutes = sorted({edge // MINUTE_MS for edge in edges})
        charged = []
        for minute in minutes:
            spent = self._spend(minute, weight)
            charged.append(minute)
            if spent > limit - limit // 20:
                for taken in charged:
                    self._spend(taken, -weight)
                free_at = (minute + 1) * MINUTE_MS + MINUTE_EDGE_MS  # no longer lands there
                raise ExchangeRateLimited(
                    f"This key's rate-limit budget for the minute is spent ({spent - weight} of "
                    f"{limit}); not sending.",
                    code="EXCHANGE_RATE_LIMITED",
                    extra={"retry_after_seconds": (free_at - at_ms) / 1000},
                )

    def _spend(self, minute: int, weight: int) -> int:
        """Adds `weight` to the points every process spent in `minute`; returns the total."""
        counter = f"{self.prefix}:spent:{minute}"
        cache.add(counter, 0, timeout=3 * MINUTE_MS // 1000)
        try:
            return cache.incr(counter, weight)
        except ValueError:  # expired between add and incr (file cache only)
            cache.set(counter, max(weight, 0), timeout=3 * MINUTE_MS // 1000)
            return max(weight, 0)


class Transport:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        key_role: str = "public",
        base_url: str | None = None,
    ) -> None:
        self.base_url = (base_url or settings.BITVAVO_API_URL).rstrip("/")
        self.path_prefix = urlsplit(self.base_url).path  # "/v2"
        self.api_key = api_key
        self.api_secret = api_secret
        self.key_role = key_role
        self.rate_limit = RateLimitState(api_key, key_role=key_role)
        self.session = requests.Session()
        self._offset_key = _offset_key(self.base_url)

    # --- clock ---

    def _server_now_ms(self) -> int:
        """The exchange's time as far as we know it (its bans and minutes are on its clock)."""
        return now_ms() + (cache.get(self._offset_key) or 0)

    def clock_offset_ms(self) -> int:
        """Server time minus local time, learned from GET /time and shared for a while."""
        offset = cache.get(self._offset_key)
        if offset is None:
            self.rate_limit.reserve(1, at_ms=now_ms())
            # Only the HTTP round trip between the two readings: its midpoint is the
            # server's moment.
            before = now_ms()
            response = self._send("GET", "/time", "", {"Accept": "application/json"})
            after = now_ms()
            offset = int(self._parse(response)["time"]) - (before + after) // 2
            clock_offset_seen(offset, base_url=self.base_url)
        return offset

    def exchange_now_ms(self) -> int:
        """Now on the exchange's clock; learns the offset first (raises if it cannot)."""
        return now_ms() + self.clock_offset_ms()

    # --- requests ---

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        body: dict | None = None,
        weight: int = 1,
        signed: bool | None = None,
        audit: bool = False,
        client_order_id: str | None = None,
    ) -> Any:
        """Sends one request; returns the parsed JSON or raises an ExchangeError.

        `audit` writes an ExchangeCall row for the call, whatever happened, even nothing.
        """
        signed = bool(self.api_key) if signed is None else signed
        query = urlencode([(k, v) for k, v in (params or {}).items() if v is not None])
        path_with_query = f"{path}?{query}" if query else path
        # These exact bytes are both signed and sent.
        payload = json.dumps(body, separators=(",", ":")) if body is not None else ""

        started = time.perf_counter()
        response = None
        # An order's row goes on a connection of its own, before the request: no failure of
        # the caller's connection can lose it (exchange/call_log.py).
        log_row = (
            self._call_log_open(method, path_with_query, body, client_order_id)
            if (audit and method == "POST")
            else None
        )
        try:
            self.rate_limit.reserve(weight, at_ms=self._server_now_ms())
            headers = self._headers(method, path_with_query, payload, signed)
            response = self._send(method, path_with_query, payload, headers)
            result = self._parse(response)
        except ExchangeError as error:
            if log_row is not None:
                self._close_log(log_row, method, path_with_query, response, None, error, started)
            elif audit:
                self._audit(
                    method, path_with_query, body, response, None, error, started, client_order_id
                )
            raise
        except BaseException as error:
            if log_row is not None:  # our own failure: the request may have gone out
                outcome = _call_outcome(response, None, None, started)
                outcome["error_code"] = type(error).__name__[:64]
                call_log_close(log_row, **outcome)
                self._count(method, path_with_query, outcome)
            raise
        if log_row is not None:
            self._close_log(log_row, method, path_with_query, response, result, None, started)
        elif audit:
            self._audit(
                method, path_with_query, body, response, result, None, started, client_order_id
            )
        return result

    def _close_log(self, log_row, method, path, response, result, error, started) -> None:
        outcome = _call_outcome(response, result, error, started)
        call_log_close(log_row, **outcome)
        self._count(method, path, outcome)

    def _count(self, method: str, path: str, outcome: dict) -> None:
        """Every audited call in the shared counters /metrics reads."""
        status = outcome["status_code"]
        exchange_call_count(
            key_role=self.key_role,
            method=method,
            endpoint=f"{self.path_prefix}{path}".split("?", 1)[0],
            status=str(status) if status is not None else (outcome["error_code"] or "none"),
            latency_ms=outcome["latency_ms"],
        )

    def _call_log_open(self, method, path, body, client_order_id) -> int:
        try:
            return call_log_open(
                key_role=self.key_role,
                method=method,
                path=f"{self.path_prefix}{path}",
                request_body=body,
                client_order_id=client_order_id,
            )
        except Exception as error:
            raise ExchangeNotSent(
                f"Could not write the call log row, so the order was not sent: {error}",
                code="EXCHANGE_CALL_LOG_UNAVAILABLE",
            ) from error

    def _headers(self, method: str, path_with_query: str, payload: str, signed: bool) -> dict:
        headers = {"Accept": "application/json"}
        if payload:
            headers["Content-Type"] = "application/json"
        if not signed:
            return headers
        if not (self.api_key and self.api_secret):
            raise ExchangeNotSent("No API key for a signed request.", code="EXCHANGE_NO_KEY")
        try:
            offset = self.clock_offset_ms()
        except ExchangeRateLimited:
            raise
        except ExchangeError as error:
            # Our request was never sent: only the clock lookup failed.
            raise ExchangeNotSent(
                f"Could not read the exchange's clock: {error.message}",
                code="EXCHANGE_CLOCK_SYNC_FAILED",
            ) from error
        timestamp = now_ms() + offset
        headers.update(
            {
                "Bitvavo-Access-Key": self.api_key,
                "Bitvavo-Access-Timestamp": str(timestamp),
                "Bitvavo-Access-Window": str(settings.BITVAVO_ACCESS_WINDOW_MS),
                "Bitvavo-Access-Signature": sign(
                    secret=self.api_secret,
                    timestamp=timestamp,
                    method=method,
                    path=f"{self.path_prefix}{path_with_query}",
                    body=payload,
                ),
            }
        )
        return headers

    def _send(self, method: str, path_with_query: str, payload: str, headers: dict):
        try:
            return self.session.request(
                method,
                f"{self.base_url}{path_with_query}",
                data=payload.encode() if payload else None,
                headers=headers,
                timeout=(settings.BITVAVO_CONNECT_TIMEOUT, settings.BITVAVO_READ_TIMEOUT),
            )
        except requests.ConnectionError as error:
            if _never_sent(error):
                raise ExchangeNotSent(
                    f"Could not connect: {error}", code="EXCHANGE_UNREACHABLE"
                ) from error
            # Dropped after the request went out: it may have been acted on.
            raise ExchangeOutcomeUnknown(
                f"Connection lost: {error}", code="EXCHANGE_CONNECTION_LOST"
            ) from error
        except requests.Timeout as error:
            raise ExchangeOutcomeUnknown(f"No answer: {error}", code="EXCHANGE_TIMEOUT") from error
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as error:
            raise ExchangeNotSent(f"Bad URL: {error}", code="EXCHANGE_UNREACHABLE") from error
        except requests.RequestException as error:
            raise ExchangeOutcomeUnknown(
                f"Transport error: {error}", code="EXCHANGE_TRANSPORT_ERROR"
            ) from error

    def _parse(self, response: requests.Response) -> Any:
        self._record_rate_limit(response)
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code < 300 and data is not None:
            return data
        if isinstance(data, dict) and "errorCode" in data:
            error = error_from_response(
                http_status=response.status_code,
                error_code=int(data["errorCode"]),
                message=str(data.get("error", "")),
            )
        elif response.status_code == 429:
            error = error_from_response(http_status=429, error_code=None, message="HTTP 429")
        elif 400 <= response.status_code < 500 and data is not None:
            error = error_from_response(
                http_status=response.status_code, error_code=None, message=str(data)[:500]
            )
        else:
            # An HTML 502 from a proxy, an empty 200: we cannot know what happened.
            error = ExchangeOutcomeUnknown(
                f"Unreadable answer, HTTP {response.status_code}: {response.text[:200]!r}",
                code="EXCHANGE_BAD_RESPONSE",
                http_status_code=response.status_code,
            )
        if error.kind == "rate_limited":
            # Bitvavo names the expiry in its 105 message; otherwise wait out the next minute.
            match = BAN_EXPIRY.search(error.message)
            server_now = self._server_now_ms()
            reset_at = self.rate_limit.get().get("reset_at_ms") or server_now
            until = int(match.group(1)) if match else reset_at + MINUTE_MS
            self.rate_limit.ban(until, at_ms=server_now)
            error.extra["retry_after_seconds"] = max(0, (until - server_now) / 1000)
        if error.code == "EXCHANGE_CLOCK_DRIFT":
            cache.delete(self._offset_key)
        raise error

    def _record_rate_limit(self, response: requests.Response) -> None:
        values = [
            response.headers.get(f"bitvavo-ratelimit-{name}")
            for name in ("limit", "remaining", "resetat")
        ]
        if any(v is not None for v in values):
            limit, remaining, reset_at = (int(v) if v is not None else None for v in values)
            self.rate_limit.record(limit=limit, remaining=remaining, reset_at_ms=reset_at)

    def _audit(self, method, path, body, response, result, error, started, client_order_id):
        """One ExchangeCall row. A failure here is logged, never changes the call's outcome."""
        from exchange.models import ExchangeCall

        outcome = _call_outcome(response, result, error, started)
        try:
            outer_transaction = connection.in_atomic_block
            with transaction.atomic():
                if connection.vendor == "postgresql" and not outer_transaction:
                    # No fsync wait for the call log: the execution row is the durable record
                    # of an order; a crash can lose at most the last fraction of a second here.
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL synchronous_commit TO OFF")
                ExchangeCall.objects.create(
                    key_role=self.key_role,
                    method=method,
                    path=f"{self.path_prefix}{path}",
                    request_body=body,
                    client_order_id=client_order_id,
                    **outcome,
                )
        except Exception:
            logger.exception("could not write the exchange call log for %s %s", method, path)
        self._count(method, path, outcome)


# Bounds of the exchange-call latency histogram, in seconds (/metrics).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def exchange_call_count(
    *, key_role: str, method: str, endpoint: str, status: str, latency_ms: int
) -> None:
    """The call in the shared counters /metrics reads: by outcome, and its latency's bucket
    (the first bound it is within; /metrics adds them up into the cumulative histogram)."""
    counter_add("exchange_calls", labels=(key_role, method, endpoint, status))
    bucket = next((str(b) for b in LATENCY_BUCKETS if latency_ms <= b * 1000), "+Inf")
    counter_add("exchange_call_latency_bucket", labels=(key_role, bucket))
    counter_add("exchange_call_latency_count", labels=(key_role,))
    counter_add("exchange_call_latency_ms_sum", latency_ms, labels=(key_role,))


def _call_outcome(response, result, error, started) -> dict:
    """What an ExchangeCall row records of a call's outcome."""
    if result is None and response is not None:
        try:
            result = response.json()
        except ValueError:
            result = {"text": response.text[:2000]}
    return {
        "status_code": response.status_code if response is not None else None,
        "response_body": result,
        "error_code": error.code if error else "",
        "error_kind": error.kind if error else "",
        "latency_ms": int((time.perf_counter() - started) * 1000),
    }


def _offset_key(base_url: str) -> str:
    return f"bitvavo:clock-offset:{base_url.rstrip('/')}"


def clock_offset_seen(offset_ms: int, *, base_url: str) -> None:
    """A measured offset: what every transport of `base_url` compensates from now on."""
    cache.set(_offset_key(base_url), offset_ms, CLOCK_OFFSET_TTL_SECONDS)
    cache.set(CLOCK_OFFSET_SEEN_KEY, offset_ms, timeout=None)


def clock_offset_known() -> int | None:
    """The exchange's clock minus ours (ms) as last measured by any process, or None."""
    return cache.get(CLOCK_OFFSET_SEEN_KEY)


def probe_can_trade(transport: Transport, *, operator_id: int) -> bool:
    """True if the key may trade (240, unknown order), False if it may not (310).

    No endpoint reports a key's permissions; cancelling a random order id cannot cancel
    anything. Both the key self-checks and the trade client ask through this one probe.
    """
    try:
        transport.request(
            "DELETE",
            "/order",
            params={"market": "BTC-EUR", "orderId": str(uuid.uuid4()), "operatorId": operator_id},
        )
    except ExchangeRejected as error:
        if error.bitvavo_error_code == 240:
            return True
        if error.bitvavo_error_code == 310:
            return False
        raise
    return True


def _never_sent(error: requests.ConnectionError) -> bool:
    """True when the connection was never made (refused, unresolvable, connect timeout)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too
