"""The signing HTTP transport for Bitvavo's REST API v2.

It signs exactly the bytes it sends (compact JSON, the query string inside the signed path),
keeps a clock offset learned from GET /time, puts a connect and read timeout on every call,
and turns every answer, JSON or not, into data or one ExchangeError.

The rate-limit budget and any ban are shared by every process using the same key: they live
in the Django cache (Redis in production), keyed by a hash of the API key. While a key is
banned, nothing is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from exchange.errors import (
    ExchangeError,
    ExchangeNotSent,
    ExchangeOutcomeUnknown,
    ExchangeRateLimited,
    error_from_response,
)

BAN_EXPIRY = re.compile(r"expires at (\d+)")
CLOCK_OFFSET_TTL_SECONDS = 600


def sign(*, secret: str, timestamp: int, method: str, path: str, body: str) -> str:
    """Bitvavo's signature: hex HMAC-SHA256 over timestamp + METHOD + /v2 path (+query) + body."""
    message = f"{timestamp}{method.upper()}{path}{body}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RateLimitState:
    """The shared per-key budget: what the exchange said is left, and any ban."""

    def __init__(self, api_key: str | None) -> None:
        ident = hashlib.sha256((api_key or "anonymous").encode()).hexdigest()[:16]
        self.cache_key = f"bitvavo:ratelimit:{ident}"

    def get(self) -> dict:
        return cache.get(self.cache_key) or {}

    def record(self, *, remaining: int | None, reset_at_ms: int | None) -> None:
        state = self.get()
        if remaining is not None:
            state["remaining"] = remaining
        if reset_at_ms is not None:
            state["reset_at_ms"] = reset_at_ms
        cache.set(self.cache_key, state, timeout=3600)

    def ban(self, until_ms: int) -> None:
        state = self.get()
        state["banned_until_ms"] = until_ms
        cache.set(self.cache_key, state, timeout=3600)

    def refusal(self, weight: int) -> ExchangeRateLimited | None:
        """Why this request may not be sent now, if it may not."""
        state, current = self.get(), now_ms()
        banned_until = state.get("banned_until_ms", 0)
        if banned_until > current:
            return ExchangeRateLimited(
                f"The API key is banned by the exchange until {banned_until} ms.",
                code="EXCHANGE_BANNED",
                extra={"retry_after_seconds": (banned_until - current) / 1000},
            )
        reset_at = state.get("reset_at_ms", 0)
        if reset_at > current and state.get("remaining", weight) < weight:
            return ExchangeRateLimited(
                f"The rate-limit budget is spent until {reset_at} ms; not sending.",
                code="EXCHANGE_RATE_BUDGET_SPENT",
                extra={"retry_after_seconds": (reset_at - current) / 1000},
            )
        return None


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
        self.rate_limit = RateLimitState(api_key)
        self.session = requests.Session()

    # --- clock ---

    def clock_offset_ms(self) -> int:
        """Server time minus local time, learned from GET /time and shared for a while."""
        key = f"bitvavo:clock-offset:{self.base_url}"
        offset = cache.get(key)
        if offset is None:
            before = now_ms()
            server = self.request("GET", "/time", signed=False)["time"]
            after = now_ms()
            offset = int(server) - (before + after) // 2
            cache.set(key, offset, CLOCK_OFFSET_TTL_SECONDS)
        return offset

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
        signed = bool(self.api_key) if signed is None else signed
        query = urlencode([(k, v) for k, v in (params or {}).items() if v is not None])
        path_with_query = f"{path}?{query}" if query else path
        payload = json.dumps(body, separators=(",", ":")) if body is not None else ""

        refusal = self.rate_limit.refusal(weight)
        if refusal is not None:
            if audit:
                self._audit(method, path_with_query, body, None, None, refusal, 0, client_order_id)
            raise refusal

        headers = {"Accept": "application/json"}
        if payload:
            headers["Content-Type"] = "application/json"
        if signed:
            if not (self.api_key and self.api_secret):
                raise ExchangeNotSent("No API key for a signed request.", code="EXCHANGE_NO_KEY")
            timestamp = now_ms() + self.clock_offset_ms()
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

        started = time.perf_counter()
        response = None
        try:
            response = self.session.request(
                method,
                f"{self.base_url}{path_with_query}",
                data=payload.encode() if payload else None,
                headers=headers,
                timeout=(settings.BITVAVO_CONNECT_TIMEOUT, settings.BITVAVO_READ_TIMEOUT),
            )
            result = self._parse(response)
        except ExchangeError as error:
            self._finish(
                method, path_with_query, body, response, error, started, audit, client_order_id
            )
            raise
        except (requests.ConnectTimeout, requests.exceptions.InvalidURL) as error:
            failure = ExchangeNotSent(f"Could not connect: {error}", code="EXCHANGE_UNREACHABLE")
            self._finish(
                method, path_with_query, body, None, failure, started, audit, client_order_id
            )
            raise failure from error
        except requests.ConnectionError as error:
            # Refused before anything was sent, or dropped after: only the first is safe.
            sent = not _is_connection_refused(error)
            failure = (ExchangeOutcomeUnknown if sent else ExchangeNotSent)(
                f"Connection failed: {error}",
                code="EXCHANGE_CONNECTION_LOST" if sent else "EXCHANGE_UNREACHABLE",
            )
            self._finish(
                method, path_with_query, body, None, failure, started, audit, client_order_id
            )
            raise failure from error
        except requests.RequestException as error:
            failure = ExchangeOutcomeUnknown(f"No answer: {error}", code="EXCHANGE_TIMEOUT")
            self._finish(
                method, path_with_query, body, None, failure, started, audit, client_order_id
            )
            raise failure from error
        self._finish(
            method,
            path_with_query,
            body,
            response,
            None,
            started,
            audit,
            client_order_id,
            result=result,
        )
        return result

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
            match = BAN_EXPIRY.search(error.message)
            reset_at = self.rate_limit.get().get("reset_at_ms") or now_ms()
            until = int(match.group(1)) if match else reset_at + 60_000
            self.rate_limit.ban(until)
            error.extra["retry_after_seconds"] = max(0, (until - now_ms()) / 1000)
        if error.code == "EXCHANGE_CLOCK_DRIFT":
            cache.delete(f"bitvavo:clock-offset:{self.base_url}")
        raise error

    def _record_rate_limit(self, response: requests.Response) -> None:
        remaining = response.headers.get("bitvavo-ratelimit-remaining")
        reset_at = response.headers.get("bitvavo-ratelimit-resetat")
        if remaining is not None or reset_at is not None:
            self.rate_limit.record(
                remaining=int(remaining) if remaining is not None else None,
                reset_at_ms=int(reset_at) if reset_at is not None else None,
            )

    def _finish(
        self, method, path, body, response, error, started, audit, client_order_id, result=None
    ):
        if not audit:
            return
        latency_ms = int((time.perf_counter() - started) * 1000)
        self._audit(method, path, body, response, result, error, latency_ms, client_order_id)

    def _audit(self, method, path, body, response, result, error, latency_ms, client_order_id):
        from exchange.models import ExchangeCall

        outer_transaction = connection.in_atomic_block
        if result is None and response is not None:
            try:
                result = response.json()
            except ValueError:
                result = {"text": response.text[:2000]}
        with transaction.atomic():
            if connection.vendor == "postgresql" and not outer_transaction:
                # No fsync wait for the call log: the execution row is the durable record of
                # an order, and a crash can lose at most the last fraction of a second here.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            ExchangeCall.objects.create(
                key_role=self.key_role,
                method=method,
                path=f"{self.path_prefix}{path}",
                request_body=body,
                status_code=response.status_code if response is not None else None,
                response_body=result,
                error_code=error.code if error else "",
                error_kind=error.kind if error else "",
                latency_ms=latency_ms,
                client_order_id=client_order_id,
            )


def _is_connection_refused(error: requests.ConnectionError) -> bool:
    text = str(error)
    return "Connection refused" in text or "NewConnectionError" in text
