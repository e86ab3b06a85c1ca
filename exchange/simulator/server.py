"""A Bitvavo-compatible REST v2 server over real HTTP, for paper mode, the demo and tests.

It checks what Bitvavo checks, in a sensible order (headers 300-309, rate limits 105,
permissions 310/311, then parameters, market status, sizes and balance) and answers in
Bitvavo's shapes, with the rate-limit headers on every answer. `/_sim/...` is its own
unauthenticated control API (reset, faults, fill modes, balances, market status and rules,
rate limit, clock skew, strict signing, the orders it accepted); see control.py. Only the
simulator has it.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from dataclasses import asdict
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from exchange.simulator.state import (
    DEFAULT_BALANCES,
    FAULTS,
    MARKETS,
    ApiKey,
    Fault,
    FillMode,
    SimulatorError,
    SimulatorState,
    now_ms,
)
from exchange.transport import sign

INTERVALS = {
    "1m": 1,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}
# (method, route) -> (weight, permission needed or None for public)
ROUTES = {
    ("GET", "/time"): (1, None),
    ("GET", "/markets"): (1, None),
    ("GET", "/ticker/price"): (1, None),
    ("GET", "/ticker/book"): (1, None),
    ("GET", "/ticker/24h"): (1, None),
    ("GET", "/book"): (1, None),
    ("GET", "/candles"): (1, None),
    ("GET", "/balance"): (5, "view"),
    ("GET", "/account"): (1, "view"),
    ("GET", "/order"): (1, "trade"),
    ("POST", "/order"): (1, "trade"),
    ("DELETE", "/order"): (1, "trade"),
    ("GET", "/orders"): (5, "trade"),
    ("GET", "/ordersOpen"): (5, "trade"),
    ("GET", "/trades"): (5, "trade"),
}
MARKET_PATH = re.compile(r"^/([A-Z0-9]+-[A-Z0-9]+)/(book|candles)$")
# How long a reset waits for requests still being handled (below the control client's timeout).
RESET_DRAIN_SECONDS = 8
DEMO_READONLY = ("R" * 8 + "demo-readonly-key").ljust(64, "0"), "demo-readonly-secret"
DEMO_TRADE = ("T" * 8 + "demo-trade-key").ljust(64, "0"), "demo-trade-secret"


class DroppedConnection(Exception):
    """Close the socket without answering (the order, if any, is already placed)."""


class Handler(BaseHTTPRequestHandler):
    server: SimulatorHTTPServer
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Answer in one segment; without it, Nagle and delayed ACKs add ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        if os.environ.get("BITVAVO_SIMULATOR_LOG"):
            super().log_message(format, *args)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")

    # --- plumbing ---

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers: dict = {}
        try:
            if parts.path.startswith("/_sim/"):
                status, data = self.server.control(method, parts.path, raw_body)
            elif parts.path.startswith("/v2/"):
                route = parts.path[len("/v2") :]
                signed_path = parts.path + (f"?{parts.query}" if parts.query else "")
                with self.server.in_flight():
                    status, data, headers = self.server.api(
                        method, route, params, raw_body, signed_path, self.headers
                    )
            else:
                raise SimulatorError(404, 110, "Invalid endpoint.")
        except DroppedConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        except SimulatorError as error:
            status, data = (
                error.http_status,
                {"errorCode": error.error_code, "error": error.message},
            )
            headers = getattr(error, "headers", {})
        if isinstance(data, str):  # an HTML page from a "proxy"
            self._send(status, data.encode(), "text/html", headers)
        else:
            self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(body)


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: 30 clients connecting at once overflowed it, and a
    # dropped SYN is retried after 1 s, then 3 s, past our 3 s connect timeout.
    request_queue_size = 128

    def __init__(self, address, state: SimulatorState):
        super().__init__(address, Handler)
        self.state = state
        self._requests = 0  # API requests being handled (a slow one may act after its client left)
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def in_flight(self):
        with self._idle:
            self._requests += 1
        try:
            yield
        finally:
            with self._idle:
                self._requests -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = RESET_DRAIN_SECONDS) -> None:
        """Until no API request is being handled: a request held up by injected latency
        still acts when its client has given up, and must not act after a reset."""
        with self._idle:
            self._idle.wait_for(lambda: self._requests == 0, timeout=timeout)

    def handle_error(self, request, client_address):
        # A client that timed out and hung up is part of the game, not a server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    # --- authentication ---

    def authenticate(self, method, signed_path, raw_body, headers, needs_key: bool):
        key = headers.get("Bitvavo-Access-Key")
        if not key:
            if needs_key:
                raise SimulatorError(403, 300, "Authentication is required for this endpoint.")
            return None
        if len(key) != 64:
            raise SimulatorError(403, 301, "API Key must be of length 64.")
        timestamp = headers.get("Bitvavo-Access-Timestamp", "")
        if not timestamp.isdigit() or len(timestamp) < 13:
            raise SimulatorError(403, 302, "Timestamp is invalid. This must be in milliseconds.")
        window = int(headers.get("Bitvavo-Access-Window") or 10000)
        if not 100 <= window <= 60000:
            raise SimulatorError(403, 303, "Window must be between 100 and 60000 ms.")
        if abs(self.state.server_time_ms() - int(timestamp)) > window:
            raise SimulatorError(403, 304, "Request was not received within acceptance window.")
        api_key = self.state.keys.get(key)
        if api_key is None:
            raise SimulatorError(403, 305, "No active API key found.")
        signature = headers.get("Bitvavo-Access-Signature", "")
        if len(signature) != 64:
            raise SimulatorError(403, 308, "The signature length is invalid.")
        # The raw body, or its compact form (the official Python SDK signs the compact dump
        # but sends `json=`), or nothing (the SDK sends {} on GET/DELETE, signing nothing).
        candidates = {raw_body}
        if raw_body and not self.state.strict_signing:
            try:
                candidates.add(json.dumps(json.loads(raw_body), separators=(",", ":")))
            except ValueError:
                pass
        if method in ("GET", "DELETE") and not self.state.strict_signing:
            candidates.add("")
        expected = [
            sign(
                secret=api_key.secret,
                timestamp=int(timestamp),
                method=method,
                path=signed_path,
                body=body,
            )
            for body in candidates
        ]
        if not any(hmac.compare_digest(signature, e) for e in expected):
            raise SimulatorError(403, 309, "The signature is invalid.")
        return key, api_key, int(timestamp) + window

    # --- the API ---

    def api(self, method, route, params, raw_body, signed_path, headers):
        state = self.state
        market_path = MARKET_PATH.match(route)
        route_key = (method, f"/{market_path.group(2)}" if market_path else route)
        if route_key not in ROUTES:
            raise SimulatorError(404, 110, "Invalid endpoint.")
        weight, permission = ROUTES[route_key]
        if route_key == ("GET", "/ticker/24h") and "market" not in params:
            weight = 25
        if route_key == ("GET", "/ordersOpen") and "market" not in params:
            weight = 100

        auth = self.authenticate(method, signed_path, raw_body, headers, permission is not None)
        bucket = auth[0] if auth else f"ip:{self.server_address[0]}"
        try:
            remaining, reset_at = state.charge(bucket, weight)
        except SimulatorError as error:
            error.headers = {
                "bitvavo-ratelimit-limit": state.rate_limit,
                "bitvavo-ratelimit-remaining": 0,
            }
            raise
        rate_headers = {
            "bitvavo-ratelimit-limit": state.rate_limit,
            "bitvavo-ratelimit-remaining": remaining,
            "bitvavo-ratelimit-resetat": reset_at,
        }
        try:
            status, data = self.answer(method, route, route_key, params, raw_body, auth, bucket)
        except SimulatorError as error:
            # Bitvavo sends the rate-limit headers on every answer, errors too.
            error.headers = {**rate_headers, **getattr(error, "headers", {})}
            raise
        return status, data, rate_headers

    def answer(self, method, route, route_key, params, raw_body, auth, bucket):
        """(status, data) for an authenticated, charged request, faults included."""
        state = self.state
        permission = ROUTES[route_key][1]
        if permission and permission not in auth[1].permissions:
            code = 310 if permission == "trade" else 311
            raise SimulatorError(403, code, f"This key does not allow access ({permission}).")

        fault = state.take_fault(method, route)
        kind = fault.kind if fault is not None else None
        if kind == "latency":
            time.sleep(fault.seconds)
            if auth and route_key == ("POST", "/order") and state.server_time_ms() > auth[2]:
                # Too late for the access window: the engine does not take the order.
                raise SimulatorError(
                    503, 108, "Your order could not be processed within the access window."
                )
        elif kind == "ban_429":
            state.ban(bucket, state.server_time_ms() + int(fault.seconds * 1000 or 60_000))
            state.charge(bucket, 0)  # raises the 105 with its expiry
        elif kind == "error_304":
            raise SimulatorError(403, 304, "Request was not received within acceptance window.")
        elif kind == "error_109_no_commit":
            raise SimulatorError(503, 109, "Request timed out at the matching engine.")
        elif kind == "html_502_no_commit":
            return 502, "<html><body><h1>502 Bad Gateway</h1></body></html>"

        data = self.dispatch(route_key, route, params, raw_body)
        if kind == "drop_after_commit":
            raise DroppedConnection
        if kind == "error_101_after_commit":
            raise SimulatorError(500, 101, "Unknown server error. Operation may have succeeded.")
        if kind == "error_109_after_commit":
            raise SimulatorError(503, 109, "Request timed out at the matching engine.")
        return 200, data

    def dispatch(self, route_key, route, params, raw_body):
        state = self.state
        market_path = MARKET_PATH.match(route)
        method, name = route_key
        market = params.get("market")
        if name == "/time":
            return {"time": state.server_time_ms()}
        if name == "/markets":
            if market:
                if market not in MARKETS:
                    raise SimulatorError(400, 205, "market parameter is invalid.")
                return state.market_info(market)
            return [state.market_info(m) for m in MARKETS]
        if name in ("/ticker/price", "/ticker/book", "/ticker/24h"):
            markets = [market] if market else list(MARKETS)
            if market and market not in MARKETS:
                raise SimulatorError(400, 205, "market parameter is invalid.")
            rows = [self.ticker(name, m) for m in markets]
            return rows[0] if market else rows
        if market_path:
            market = market_path.group(1)
            if market not in MARKETS:
                raise SimulatorError(400, 205, "market parameter is invalid.")
            if name == "/book":
                return self.book(market, int(params.get("depth", 25)))
            interval = params.get("interval")
            if interval not in INTERVALS:
                raise SimulatorError(400, 205, "interval parameter is invalid.")
            limit = min(1440, max(1, int(params.get("limit", 1440))))
            end = int(params["end"]) if params.get("end") else None
            return state.candles(market, INTERVALS[interval], limit, end)
        if name == "/balance":
            return state.balance_list(params.get("symbol"))
        if name == "/account":
            return {"fees": {"taker": "0.0025", "maker": "0.0015", "volume": "0.00"}}
        if name == "/order" and method == "POST":
            try:
                body = json.loads(raw_body or "{}")
            except ValueError:
                raise SimulatorError(400, 102, "The JSON object you sent is invalid.") from None
            if not isinstance(body, dict):
                raise SimulatorError(400, 102, "The JSON object you sent is invalid.")
            return state.place_market_order(body)
        if name == "/order":
            if not market:
                raise SimulatorError(400, 203, "market parameter is required.")
            if method == "DELETE" and "operatorId" not in params:
                raise SimulatorError(400, 203, "operatorId parameter is required.")
            if method == "DELETE" and not params["operatorId"].isdigit():
                raise SimulatorError(400, 205, "operatorId parameter is invalid.")
            order = state.find_order(market, params.get("orderId"), params.get("clientOrderId"))
            if order is None:
                raise SimulatorError(
                    404,
                    240,
                    "No order found. Please be aware that "
                    "simultaneously updating the same order may return this error.",
                )
            if method == "DELETE":
                raise SimulatorError(400, 233, "Order must be active to be cancelled.")
            return order
        if name in ("/orders", "/trades"):
            if not market:
                raise SimulatorError(400, 203, "market parameter is required.")
            start = int(params["start"]) if params.get("start") else None
            end = int(params["end"]) if params.get("end") else None
            limit = min(1000, int(params.get("limit", 500)))
            if name == "/orders":
                return state.orders_between(market, start, end, limit)
            return state.fills_between(market, start, end, limit)
        if name == "/ordersOpen":
            # A market order rests only until its fills come (see the fill modes).
            return state.open_orders(market)
        raise SimulatorError(404, 110, "Invalid endpoint.")

    def ticker(self, name: str, market: str) -> dict:
        state = self.state
        price = state.price(market)
        spread = state.to_tick(market, price * Decimal("0.0005")) or Decimal("0")
        if name == "/ticker/price":
            return {"market": market, "price": _s(price)}
        book = {
            "bid": _s(price - spread),
            "bidSize": "1.5",
            "ask": _s(price + spread),
            "askSize": "1.2",
        }
        if name == "/ticker/book":
            return {"market": market, **book}
        day = state.candles(market, 1440, 1, None)[0]
        opened = state.close_at_minute(market, now_ms() // 60_000 - 1440)
        return {
            "market": market,
            "startTimestamp": now_ms() - 86_400_000,
            "timestamp": now_ms(),
            "open": _s(opened),
            "openTimestamp": now_ms() - 86_400_000,
            "high": day[2],
            "low": day[3],
            "last": _s(price),
            "closeTimestamp": now_ms(),
            **book,
            "volume": day[5],
            "volumeQuote": _s(Decimal(day[5]) * price),
        }

    def book(self, market: str, depth: int) -> dict:
        price = self.state.price(market)
        tick = MARKETS[market][1]
        bids = [[_s(price - tick * (i + 1)), "0.5"] for i in range(min(depth, 50))]
        asks = [[_s(price + tick * (i + 1)), "0.5"] for i in range(min(depth, 50))]
        return {
            "market": market,
            "nonce": now_ms(),
            "bids": bids,
            "asks": asks,
            "timestamp": now_ms(),
        }

    # --- control API (/_sim/...) ---

    def control(self, method: str, path: str, raw_body: str):
        state = self.state
        body = json.loads(raw_body) if raw_body else {}
        if path == "/_sim/reset" and method == "POST":
            self.wait_idle()
            with state.lock:
                state.history_days = state.initial_history_days
                state.reset()
            return 200, {"ok": True}
        if path == "/_sim/faults" and method == "POST":
            if body.get("kind") not in FAULTS:
                raise SimulatorError(400, 205, f"Unknown fault; one of {sorted(FAULTS)}.")
            with state.lock:
                state.faults.append(Fault(**body))
            return 200, {"ok": True}
        if path == "/_sim/faults" and method == "DELETE":
            with state.lock:
                state.faults.clear()
            return 200, {"ok": True}
        if path == "/_sim/fill-mode" and method == "POST":
            try:
                mode = FillMode(**body)
            except TypeError as error:
                raise SimulatorError(400, 205, f"Unknown fill mode field: {error}.") from None
            with state.lock:
                state.fill_modes.append(mode)
            return 200, {"ok": True}
        if path == "/_sim/fill-mode" and method == "DELETE":
            with state.lock:
                state.fill_modes.clear()
            return 200, {"ok": True}
        if path == "/_sim/orders" and method == "GET":
            with state.lock:
                return 200, [state.seen(order, lookup=False) for order in state.orders]
        if path == "/_sim/balance" and method == "POST":
            with state.lock:
                state.balances[body["asset"]] = [Decimal(str(body["amount"])), Decimal("0")]
            return 200, {"ok": True}
        if path == "/_sim/market-status" and method == "POST":
            with state.lock:
                state.status[body["market"]] = body["status"]
            return 200, {"ok": True}
        if path == "/_sim/market-rules" and method == "POST":
            with state.lock:
                state.rule_changes.setdefault(body["market"], {}).update(body["rules"])
            return 200, {"ok": True}
        if path == "/_sim/price" and method == "POST":
            with state.lock:
                state.pinned_prices[body["market"]] = Decimal(str(body["price"]))
            return 200, {"ok": True}
        if path == "/_sim/rate-limit" and method == "POST":
            with state.lock:
                state.rate_limit = int(body["points_per_minute"])
            return 200, {"ok": True}
        if path == "/_sim/clock-skew" and method == "POST":
            with state.lock:
                state.clock_skew_ms = int(body["ms"])
            return 200, {"ok": True}
        if path == "/_sim/client-order-lookup" and method == "POST":
            with state.lock:
                state.lookup_closed_by_client_order_id = bool(body["finds_closed"])
            return 200, {"ok": True}
        if path == "/_sim/strict-signing" and method == "POST":
            with state.lock:
                state.strict_signing = bool(body["strict"])
            return 200, {"ok": True}
        if path == "/_sim/closes" and method == "POST":
            market = body.get("market")
            if market not in MARKETS:
                raise SimulatorError(400, 205, "market parameter is invalid.")
            state.pin_closes(
                market,
                {int(ms) // 60_000: Decimal(str(p)) for ms, p in body["closes"].items()},
            )
            return 200, {"ok": True}
        if path == "/_sim/history" and method == "POST":
            days = int(body["days"])
            if not 1 <= days <= 400:
                raise SimulatorError(400, 205, "days must be from 1 to 400.")
            with state.lock:
                state.history_days = days
                state.reset()
            return 200, {"ok": True}
        if path == "/_sim/state" and method == "GET":
            with state.lock:
                return 200, {
                    "faults": [asdict(f) for f in state.faults],
                    "fill_modes": [asdict(m) for m in state.fill_modes if m.times > 0],
                    "pending_orders": len(state.pending),
                    "orders": len(state.orders),
                    "answered_429": state.answered_429,
                    "requests": state.requests,
                    "requests_in_flight": self._requests,
                    "weight_charged": state.weight_charged,
                    "balances": {
                        asset: {"available": _s(available), "inOrder": _s(in_order)}
                        for asset, (available, in_order) in state.balances.items()
                    },
                }
        raise SimulatorError(404, 110, "Invalid control endpoint.")


def _s(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def key_pairs_from_env() -> tuple[tuple[str, str], tuple[str, str]]:
    """The pairs the clients read, or the built-in demo pairs when they are not set."""
    readonly = (
        os.environ.get("BITVAVO_READONLY_KEY") or DEMO_READONLY[0],
        os.environ.get("BITVAVO_READONLY_SECRET") or DEMO_READONLY[1],
    )
    trade = (
        os.environ.get("BITVAVO_TRADE_KEY") or DEMO_TRADE[0],
        os.environ.get("BITVAVO_TRADE_SECRET") or DEMO_TRADE[1],
    )
    return readonly, trade


class SimulatorServer:
    """Runs the simulator on 127.0.0.1 in a background thread (port 0: a free port)."""

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        readonly_pair: tuple[str, str] | None = None,
        trade_pair: tuple[str, str] | None = None,
        seed: int = 7,
        balances: dict[str, Decimal] | None = None,
        history_days: int = 3,
    ) -> None:
        env_readonly, env_trade = key_pairs_from_env()
        self.readonly_pair = readonly_pair or env_readonly
        self.trade_pair = trade_pair or env_trade
        self.state = SimulatorState(
            seed=seed,
            history_days=history_days,
            starting_balances=dict(balances or DEFAULT_BALANCES),
            keys={
                self.readonly_pair[0]: ApiKey(self.readonly_pair[1], frozenset({"view"})),
                self.trade_pair[0]: ApiKey(self.trade_pair[1], frozenset({"trade"})),
            },
        )
        self.httpd = SimulatorHTTPServer((host, port), self.state)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v2"

    @property
    def control(self):
        from exchange.simulator.control import SimulatorControl

        return SimulatorControl(self.url)

    def readonly_env(self) -> dict[str, str]:
        return {
            "BITVAVO_READONLY_KEY": self.readonly_pair[0],
            "BITVAVO_READONLY_SECRET": self.readonly_pair[1],
        }

    def trade_env(self) -> dict[str, str]:
        return {"BITVAVO_TRADE_KEY": self.trade_pair[0], "BITVAVO_TRADE_SECRET": self.trade_pair[1]}

    def start(self) -> SimulatorServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def random_key_pair() -> tuple[str, str]:
    return secrets.token_hex(32), secrets.token_urlsafe(32)
