"""The simulated exchange: markets, prices, keys, balances, orders, rate limits, faults.

Everything is in memory behind one lock; the HTTP layer (server.py) only parses requests
and renders answers. Prices are a seeded random walk per market, one step a minute, so the
same seed gives the same prices and candles.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from exchange.rules import decimal_places, format_decimal

MINUTE_MS = 60_000
RATE_LIMIT_PER_MINUTE = 1000
TAKER_FEE = Decimal("0.0025")

MARKETS = {
    # market: (start price, tick size, quantity decimals, min base)
    "BTC-EUR": (Decimal("60000"), Decimal("1"), 8, Decimal("0.00006")),
    "ETH-EUR": (Decimal("3000"), Decimal("0.01"), 8, Decimal("0.001")),
    "SOL-EUR": (Decimal("150"), Decimal("0.01"), 6, Decimal("0.03")),
    "XRP-EUR": (Decimal("0.5"), Decimal("0.00001"), 6, Decimal("10")),
    "ADA-EUR": (Decimal("0.4"), Decimal("0.00001"), 6, Decimal("12")),
}

DEFAULT_BALANCES = {"EUR": Decimal("10000"), "BTC": Decimal("0.5"), "ETH": Decimal("5")}

FAULTS = {
    "latency",  # sleep `seconds`, then go on
    "drop_after_commit",  # order placed, connection closed without an answer
    "error_101_after_commit",
    "error_109_after_commit",
    "error_109_no_commit",
    "html_502_no_commit",
    "ban_429",
}


class SimulatorError(Exception):
    """An answer in Bitvavo's error shape."""

    def __init__(self, http_status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.error_code = error_code
        self.message = message


@dataclass
class ApiKey:
    secret: str
    permissions: frozenset[str]  # {"view"} or {"trade"}


@dataclass
class Fault:
    kind: str
    times: int = 1
    seconds: float = 0.0
    path: str = "/order"
    method: str = "POST"


@dataclass
class RateWindow:
    minute: int = 0
    used: int = 0
    banned_until_ms: int = 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class SimulatorState:
    seed: int = 7
    keys: dict[str, ApiKey] = field(default_factory=dict)
    starting_balances: dict[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_BALANCES))
    lookup_closed_by_client_order_id: bool = False

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.walk_seeds = {
            market: int(hashlib.sha256(f"{self.seed}:{market}".encode()).hexdigest()[:8], 16)
            for market in MARKETS
        }
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.status = {market: "trading" for market in MARKETS}
            # Changes to a market's published rules (decimals, minimums), by field name.
            self.rule_changes: dict[str, dict] = {}
            # Last prices fixed by the control API (tickers and fills), instead of the walk.
            self.pinned_prices: dict[str, Decimal] = {}
            self.balances = {
                asset: [Decimal(amount), Decimal("0")]
                for asset, amount in self.starting_balances.items()
            }
            self.orders: list[dict] = []
            self.fills: list[dict] = []
            self.faults: list[Fault] = []
            self.rate: dict[str, RateWindow] = {}
            self.rate_limit = RATE_LIMIT_PER_MINUTE
            self.answered_429 = 0
            # Lenient like Bitvavo (it accepts the official SDK's re-spaced bodies); strict
            # accepts only a signature over the exact bytes received.
            self.strict_signing = False
            # The exchange's clock minus ours: what GET /time and the access window see.
            self.clock_skew_ms = 0
            self.walk_start_minute = now_ms() // MINUTE_MS - 3 * 1440
            self.closes: dict[str, list[Decimal]] = {market: [] for market in MARKETS}

    def server_time_ms(self) -> int:
        return now_ms() + self.clock_skew_ms

    # --- prices ---

    def closes_between(self, market: str, first: int, last: int) -> list[Decimal]:
        """The closing prices of minutes first..last; before the walk starts, its first price."""
        with self.lock:
            closes = self.closes[market]
            if not closes:
                closes.append(MARKETS[market][0])
            while len(closes) <= last - self.walk_start_minute:
                rng = random.Random(self.walk_seeds[market] + len(closes))
                step = Decimal(str(round(rng.gauss(0.0, 0.002), 6)))
                closes.append(self.to_tick(market, closes[-1] * (1 + step)))
            start = first - self.walk_start_minute
            before = [closes[0]] * max(0, min(-start, last - first + 1))
            return before + closes[max(0, start) : max(0, last - self.walk_start_minute + 1)]

    def close_at_minute(self, market: str, minute: int) -> Decimal:
        return self.closes_between(market, minute, minute)[0]

    def to_tick(self, market: str, price: Decimal) -> Decimal:
        tick = MARKETS[market][1]
        return max(tick, (price / tick).to_integral_value(rounding=ROUND_DOWN) * tick)

    def price(self, market: str) -> Decimal:
        pinned = self.pinned_prices.get(market)
        if pinned is not None:
            return pinned
        return self.close_at_minute(market, now_ms() // MINUTE_MS)

    def candles(self, market: str, minutes: int, limit: int, end_ms: int | None) -> list:
        # The newest candle is still forming: it holds no minute after now.
        now_minute = now_ms() // MINUTE_MS
        end_minute = min(end_ms // MINUTE_MS if end_ms else now_minute, now_minute)
        end_minute -= end_minute % minutes
        first_minute = end_minute - (limit - 1) * minutes
        last = min(end_minute + minutes - 1, now_minute)
        closes = self.closes_between(market, first_minute - 1, last)
        rows = []
        for i in range(limit):
            first = end_minute - i * minutes
            offset = first - first_minute + 1  # closes[0] is the minute before first_minute
            opening, period = closes[offset - 1], closes[offset : offset + minutes]
            rows.append(
                [
                    first * MINUTE_MS,
                    format_decimal(opening),
                    format_decimal(max(period + [opening])),
                    format_decimal(min(period + [opening])),
                    format_decimal(period[-1]),
                    format_decimal(Decimal(len(period)) * Decimal("0.75")),
                ]
            )
        return rows  # newest first, as Bitvavo sends them

    def market_info(self, market: str) -> dict:
        start, tick, quantity_decimals, min_base = MARKETS[market]
        return {
            "market": market,
            "status": self.status[market],
            "base": market.split("-")[0],
            "quote": market.split("-")[1],
            "pricePrecision": None,
            "tickSize": format_decimal(tick) if tick < 1 else f"{tick:.2f}",
            "minOrderInBaseAsset": format_decimal(min_base),
            "minOrderInQuoteAsset": "5.00",
            "maxOrderInBaseAsset": "1000000000",
            "maxOrderInQuoteAsset": "1000000000",
            "quantityDecimals": quantity_decimals,
            "notionalDecimals": 2,
            "maxOpenOrders": 100,
            "feeCategory": "A",
            "orderTypes": ["market"],
            **self.rule_changes.get(market, {}),
        }

    # --- rate limits ---

    def charge(self, bucket: str, weight: int) -> tuple[int, int]:
        """Counts the weight in the fixed one-minute window; returns (remaining, reset_at)."""
        with self.lock:
            current = self.server_time_ms()
            window = self.rate.setdefault(bucket, RateWindow())
            if window.banned_until_ms > current:
                self.answered_429 += 1
                raise SimulatorError(
                    429,
                    105,
                    "The rate limit has been exceeded. Account or IP address blocked temporarily."
                    f" The ban expires at {window.banned_until_ms}.",
                )
            minute = current // MINUTE_MS
            if window.minute != minute:
                window.minute, window.used = minute, 0
            window.used += weight
            reset_at = (minute + 1) * MINUTE_MS
            if window.used > self.rate_limit:
                self.ban(bucket, reset_at + MINUTE_MS)
                self.answered_429 += 1
                raise SimulatorError(
                    429,
                    105,
                    "The rate limit has been exceeded. Account or IP address blocked temporarily."
                    f" The ban expires at {reset_at + MINUTE_MS}.",
                )
            return max(0, self.rate_limit - window.used), reset_at

    def ban(self, bucket: str, until_ms: int) -> None:
        with self.lock:
            self.rate.setdefault(bucket, RateWindow()).banned_until_ms = until_ms

    # --- faults ---

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path == path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # --- balances ---

    def balance_list(self, symbol: str | None) -> list[dict]:
        with self.lock:
            rows = []
            for asset, (available, in_order) in sorted(self.balances.items()):
                if symbol and asset != symbol:
                    continue
                if not symbol and available == 0 and in_order == 0:
                    continue
                rows.append(
                    {
                        "symbol": asset,
                        "available": format_decimal(available) or "0",
                        "inOrder": format_decimal(in_order) or "0",
                    }
                )
            return rows

    # --- orders ---

    def place_market_order(self, body: dict) -> dict:
        """Validates like Bitvavo (precedence: parameters, market status, sizes, balance)."""
        for name in ("market", "side", "orderType"):
            if name not in body:
                raise SimulatorError(400, 203, f"{name} parameter is required.")
        if "operatorId" not in body:
            raise SimulatorError(400, 203, "operatorId parameter is required.")
        operator_id = body["operatorId"]
        if isinstance(operator_id, bool) or not isinstance(operator_id, int):
            raise SimulatorError(400, 205, "operatorId parameter is invalid.")
        market, side = body["market"], body["side"]
        if market not in MARKETS:
            raise SimulatorError(400, 205, "market parameter is invalid.")
        if side not in ("buy", "sell"):
            raise SimulatorError(400, 205, "side parameter is invalid.")
        if body["orderType"] != "market":
            raise SimulatorError(400, 205, "orderType parameter is invalid.")
        client_order_id = body.get("clientOrderId")
        if client_order_id is not None:
            try:
                uuid.UUID(str(client_order_id))
            except ValueError:
                raise SimulatorError(400, 205, "clientOrderId parameter is invalid.") from None
        has_amount, has_quote = "amount" in body, "amountQuote" in body
        if has_amount and has_quote:
            raise SimulatorError(400, 206, "amount and amountQuote cannot both be set.")
        if not (has_amount or has_quote):
            raise SimulatorError(400, 203, "amount or amountQuote parameter is required.")
        try:
            value = Decimal(str(body["amount"] if has_amount else body["amountQuote"]))
        except ArithmeticError:
            raise SimulatorError(400, 205, "amount parameter is invalid.") from None
        if not isinstance(body.get("amount", body.get("amountQuote")), str):
            raise SimulatorError(400, 205, "amounts must be strings.")
        if not value.is_finite() or value <= 0:
            raise SimulatorError(400, 205, "amount parameter is invalid.")

        with self.lock:
            status = self.status[market]
            if status != "trading":
                code = {"halted": 423, "cancelOnly": 424, "auction": 425}.get(status, 426)
                raise SimulatorError(400, code, f"The market is {status}.")
            info = self.market_info(market)
            decimals = info["quantityDecimals"] if has_amount else info["notionalDecimals"]
            if decimal_places(value) > decimals:
                raise SimulatorError(400, 429, "Too many decimal places.")
            if has_amount and value < Decimal(info["minOrderInBaseAsset"]):
                raise SimulatorError(400, 212, "Order amount is below the minimum.")
            if has_quote and value < Decimal(info["minOrderInQuoteAsset"]):
                raise SimulatorError(400, 217, "Order amountQuote is below the minimum.")
            if client_order_id is not None and any(
                o["clientOrderId"] == client_order_id
                and o["market"] == market
                and o["status"] in ("new", "partiallyFilled")
                for o in self.orders
            ):
                raise SimulatorError(400, 220, "clientOrderId is already in use.")
            return self._fill(market, side, value, has_amount, client_order_id, operator_id)

    def _fill(self, market, side, value, by_amount, client_order_id, operator_id) -> dict:
        base, quote = market.split("-")
        price = self.price(market)
        decimals = MARKETS[market][2]
        if by_amount:
            amount = value
            gross_quote = amount * price
        else:
            gross_quote = value
            amount = (value / price).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)
        fee = (gross_quote * TAKER_FEE).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
        quote_balance = self.balances.setdefault(quote, [Decimal("0"), Decimal("0")])
        base_balance = self.balances.setdefault(base, [Decimal("0"), Decimal("0")])
        if side == "buy":
            if quote_balance[0] < gross_quote + (fee if by_amount else 0):
                raise SimulatorError(400, 216, "Insufficient balance.")
            # Buying for a quote amount: the fee comes out of it.
            spent = gross_quote + fee if by_amount else gross_quote
            if not by_amount:
                amount = ((gross_quote - fee) / price).quantize(
                    Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN
                )
            quote_balance[0] -= spent
            base_balance[0] += amount
        else:
            if base_balance[0] < amount:
                raise SimulatorError(400, 216, "Insufficient balance.")
            base_balance[0] -= amount
            quote_balance[0] += amount * price - fee
        filled_quote = amount * price
        created = now_ms()
        order_id = str(uuid.uuid4())
        fill = {
            "id": str(uuid.uuid4()),
            "orderId": order_id,
            "clientOrderId": client_order_id,
            "timestamp": created,
            "market": market,
            "side": side,
            "amount": format_decimal(amount),
            "price": format_decimal(price),
            "taker": True,
            "fee": format_decimal(fee),
            "feeCurrency": quote,
            "settled": True,
        }
        order = {
            "orderId": order_id,
            "market": market,
            "created": created,
            "updated": created,
            "status": "filled",
            "side": side,
            "orderType": "market",
            "onHold": "0",
            "onHoldCurrency": quote,
            "filledAmount": format_decimal(amount),
            "filledAmountQuote": format_decimal(filled_quote),
            "feePaid": format_decimal(fee),
            "feeCurrency": quote,
            "fills": [
                {
                    k: v
                    for k, v in fill.items()
                    if k not in ("orderId", "clientOrderId", "market", "side")
                }
            ],
            "selfTradePrevention": "decrementAndCancel",
            "visible": False,
            "timeInForce": "GTC",
            "postOnly": False,
            "operatorId": operator_id,
        }
        if client_order_id is not None:
            order["clientOrderId"] = client_order_id
        if by_amount:
            order.update(amount=format_decimal(value), amountRemaining="0")
        else:
            order.update(amountQuote=format_decimal(value), amountQuoteRemaining="0")
        self.orders.append(order)
        self.fills.append(fill)
        return order

    def find_order(self, market: str, order_id: str | None, client_order_id: str | None):
        with self.lock:
            for order in reversed(self.orders):
                if order["market"] != market:
                    continue
                if client_order_id is not None:
                    if order.get("clientOrderId") != client_order_id:
                        continue
                    open_order = order["status"] in ("new", "partiallyFilled")
                    # Bitvavo may not find closed orders by clientOrderId: model the worst case.
                    if open_order or self.lookup_closed_by_client_order_id:
                        return order
                    continue
                if order["orderId"] == order_id:
                    return order
        return None

    def orders_between(self, market: str, start: int | None, end: int | None, limit: int):
        with self.lock:
            rows = [
                o
                for o in self.orders
                if o["market"] == market
                and (start is None or o["created"] >= start)
                and (end is None or o["created"] <= end)
            ]
        return list(reversed(rows))[:limit]

    def fills_between(self, market: str, start: int | None, end: int | None, limit: int):
        with self.lock:
            rows = [
                f
                for f in self.fills
                if f["market"] == market
                and (start is None or f["timestamp"] >= start)
                and (end is None or f["timestamp"] <= end)
            ]
        return list(reversed(rows))[:limit]
