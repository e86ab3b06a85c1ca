"""The simulated exchange: markets, prices, keys, balances, orders, rate limits, faults.

Everything is in memory behind one lock; the HTTP layer (server.py) only parses requests
and renders answers. Prices are a seeded random walk per market, one step a minute, so the
same seed gives the same prices and candles. The walk starts `history_days` before the last
reset; a test may pin the close of given minutes (`pinned`) to know a price exactly.
"""

from __future__ import annotations

import copy
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
    "error_304",  # refused before the engine: "not received within the access window"
}


FINAL_STATUSES = ("filled", "canceledMarketProtection", "expired", "canceled", "rejected")
# What POST /order answers: the final order, or an earlier view of it (then the final order
# is shown from the Nth lookup on, or once settle_after_seconds have passed):
# "new" (nothing filled yet), "partiallyFilled" (some fills, unsettled, no fee fields),
# "unsettled" (the final status, every fill unsettled, no fee fields).
ANSWERS = ("final", "new", "partiallyFilled", "unsettled")
FEE_CURRENCIES = ("quote", "base")  # or any other symbol: charged nowhere, only reported


@dataclass
class FillMode:
    """How the next `times` orders fill. `status` is the final status: "filled" (in full),
    "expired" (nothing filled), or a canceled* status with `fraction` of the order filled
    (market protection stopped the rest). The order is matched in `fills` fills, each one
    tick worse than the last."""

    status: str = "filled"
    fraction: str = "0.5"
    fills: int = 1
    answer: str = "final"
    settle_after_lookups: int | None = None
    settle_after_seconds: float = 0.0
    fee_currency: str = "quote"
    times: int = 1

    def __post_init__(self) -> None:
        if self.status not in FINAL_STATUSES and not self.status.startswith("canceled"):
            raise SimulatorError(400, 205, f"Unknown final status; one of {FINAL_STATUSES}.")
        if self.answer not in ANSWERS:
            raise SimulatorError(400, 205, f"Unknown answer; one of {ANSWERS}.")
        if not 0 < Decimal(str(self.fraction)) < 1 or self.fills < 1 or self.times < 1:
            raise SimulatorError(400, 205, "fraction must be in (0, 1), fills and times >= 1.")
        if self.settle_after_lookups is None and not self.settle_after_seconds:
            self.settle_after_lookups = 1


@dataclass
class PendingOrder:
    final: dict
    lookups_left: int | None
    final_at_ms: int | None


def _left(asked: Decimal, done: Decimal) -> str:
    return format_decimal(max(Decimal("0"), asked - done)) or "0"


def _early_view(order: dict, answer: str) -> dict:
    """What the exchange says before the order's fills are settled."""
    view = copy.deepcopy(order)
    unsettled = [
        {key: value for key, value in fill.items() if key not in ("fee", "feeCurrency")}
        | {"settled": False}
        for fill in order["fills"]
    ]
    if answer == "new":
        unsettled = []
    elif answer == "partiallyFilled":
        unsettled = unsettled[: (len(unsettled) + 1) // 2]
    if answer != "unsettled":
        view["status"] = "new" if not unsettled else "partiallyFilled"
    filled = sum((Decimal(f["amount"]) for f in unsettled), Decimal("0"))
    filled_quote = sum((Decimal(f["amount"]) * Decimal(f["price"]) for f in unsettled), Decimal(0))
    view.update(
        fills=unsettled,
        filledAmount=format_decimal(filled) or "0",
        filledAmountQuote=format_decimal(filled_quote) or "0",
        feePaid="0",
    )
    if "amountRemaining" in view:
        view["amountRemaining"] = _left(Decimal(view["amount"]), filled)
    else:
        view["amountQuoteRemaining"] = _left(Decimal(view["amountQuote"]), filled_quote)
    return view


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
    history_days: int = 3

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        # What the control API's reset goes back to.
        self.initial_history_days = self.history_days
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
            self.fill_modes: list[FillMode] = []
            self.pending: dict[str, PendingOrder] = {}
            self.faults: list[Fault] = []
            self.rate: dict[str, RateWindow] = {}
            self.rate_limit = RATE_LIMIT_PER_MINUTE
            self.answered_429 = 0
            # Every API request that reached the rate limiter, and the weight it charged.
            self.requests = 0
            self.weight_charged = 0
            # Lenient like Bitvavo (it accepts the official SDK's re-spaced bodies); strict
            # accepts only a signature over the exact bytes received.
            self.strict_signing = False
            # The exchange's clock minus ours: what GET /time and the access window see.
            self.clock_skew_ms = 0
            self.walk_start_minute = now_ms() // MINUTE_MS - self.history_days * 1440
            self.closes: dict[str, list[Decimal]] = {market: [] for market in MARKETS}
            # Closes set by the control API for single minutes: {market: {minute: close}}.
            self.pinned: dict[str, dict[int, Decimal]] = {market: {} for market in MARKETS}

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
            walk = before + closes[max(0, start) : max(0, last - self.walk_start_minute + 1)]
            pinned = self.pinned[market]
            if not pinned:
                return walk
            # A pinned minute closes at its pinned price; the walk itself goes on unchanged.
            return [pinned.get(first + i, close) for i, close in enumerate(walk)]

    def pin_closes(self, market: str, closes: dict[int, Decimal]) -> None:
        with self.lock:
            self.pinned[market].update(closes)

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
            self.requests += 1
            self.weight_charged += weight
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

    def take_fill_mode(self) -> FillMode:
        with self.lock:
            for mode in self.fill_modes:
                if mode.times > 0:
                    mode.times -= 1
                    return mode
        return FillMode()

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
        """Fills the order as the next fill mode says (by default: at once, in full)."""
        base, quote = market.split("-")
        mode = self.take_fill_mode()
        price = self.price(market)
        tick, decimals = MARKETS[market][1], MARKETS[market][2]
        step = Decimal(1).scaleb(-decimals)
        # Checked for the whole order first, as an exchange holds the funds before matching.
        if by_amount:
            needed = value * price * (1 + TAKER_FEE) if side == "buy" else value
        else:
            needed = value if side == "buy" else (value / price).quantize(step, ROUND_DOWN)
        have = self.balances.get(quote if side == "buy" else base, [Decimal("0")])[0]
        if have < needed:
            raise SimulatorError(400, 216, "Insufficient balance.")

        share = Decimal("0") if mode.status == "expired" else Decimal("1")
        if mode.status not in ("filled", "expired"):
            share = Decimal(str(mode.fraction))
        fee_currency = {"quote": quote, "base": base}.get(mode.fee_currency, mode.fee_currency)
        created = self.server_time_ms()  # Bitvavo stamps orders and fills on its own clock
        fills, spent_quote = [], Decimal("0")
        quote_balance = self.balances.setdefault(quote, [Decimal("0"), Decimal("0")])
        base_balance = self.balances.setdefault(base, [Decimal("0"), Decimal("0")])
        pieces = mode.fills if share > 0 else 0
        for index in range(pieces):
            # Each further fill walks one tick deeper into the book.
            fill_price = price + tick * index if side == "buy" else max(tick, price - tick * index)
            part = (value * share / pieces).quantize(
                step if by_amount else Decimal("0.01"), ROUND_DOWN
            )
            if by_amount:
                amount, gross_quote = part, part * fill_price
            else:
                gross_quote = part
                amount = (part / fill_price).quantize(step, rounding=ROUND_DOWN)
            fee = (gross_quote * TAKER_FEE).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
            if side == "buy" and not by_amount and fee_currency == quote:
                # Buying for a quote amount: the fee comes out of it.
                amount = ((gross_quote - fee) / fill_price).quantize(step, rounding=ROUND_DOWN)
            if fee_currency == base:
                fee = (amount * TAKER_FEE).quantize(step, rounding=ROUND_DOWN)
            if amount <= 0:
                continue
            if side == "buy":
                fee_on_top = fee if by_amount and fee_currency == quote else 0
                quote_balance[0] -= gross_quote + fee_on_top
                base_balance[0] += amount - (fee if fee_currency == base else 0)
            else:
                base_balance[0] -= amount + (fee if fee_currency == base else 0)
                quote_balance[0] += amount * fill_price - (fee if fee_currency == quote else 0)
            spent_quote += gross_quote
            fills.append(
                {
                    "id": str(uuid.uuid4()),
                    "timestamp": created,
                    "amount": format_decimal(amount),
                    "price": format_decimal(fill_price),
                    "taker": True,
                    "fee": format_decimal(fee) or "0",
                    "feeCurrency": fee_currency,
                    "settled": True,
                }
            )
        filled = sum((Decimal(f["amount"]) for f in fills), Decimal("0"))
        filled_quote = sum((Decimal(f["amount"]) * Decimal(f["price"]) for f in fills), Decimal(0))
        fee_paid = sum((Decimal(f["fee"]) for f in fills), Decimal("0"))
        order_id = str(uuid.uuid4())
        order = {
            "orderId": order_id,
            "market": market,
            "created": created,
            "updated": created,
            "status": mode.status,
            "side": side,
            "orderType": "market",
            "onHold": "0",
            "onHoldCurrency": quote,
            "filledAmount": format_decimal(filled) or "0",
            "filledAmountQuote": format_decimal(filled_quote) or "0",
            "feePaid": format_decimal(fee_paid) or "0",
            "feeCurrency": fee_currency,
            "fills": fills,
            "selfTradePrevention": "decrementAndCancel",
            "visible": False,
            "timeInForce": "GTC",
            "postOnly": False,
            "operatorId": operator_id,
        }
        if client_order_id is not None:
            order["clientOrderId"] = client_order_id
        if by_amount:
            order.update(amount=format_decimal(value), amountRemaining=_left(value, filled))
        else:
            order.update(
                amountQuote=format_decimal(value), amountQuoteRemaining=_left(value, spent_quote)
            )
        if mode.answer == "final":
            self._publish(order)
            self.orders.append(order)
        else:
            # What the exchange answers now; the final order above comes later.
            shown = _early_view(order, mode.answer)
            self.pending[order_id] = PendingOrder(
                final=order,
                lookups_left=mode.settle_after_lookups,
                final_at_ms=created + int(mode.settle_after_seconds * 1000)
                if mode.settle_after_seconds
                else None,
            )
            self.orders.append(shown)
        return copy.deepcopy(self.orders[-1])

    def _publish(self, order: dict) -> None:
        """The order's fills become visible in GET /trades."""
        extra = {
            "orderId": order["orderId"],
            "clientOrderId": order.get("clientOrderId"),
            "market": order["market"],
            "side": order["side"],
        }
        self.fills.extend({**fill, **extra} for fill in order["fills"])

    def seen(self, order: dict, *, lookup: bool) -> dict:
        """The order as a lookup sees it now: a pending order turns final at its Nth lookup
        or once its time has come. Returns a copy, so callers cannot change the book."""
        with self.lock:
            pending = self.pending.get(order["orderId"])
            if pending is not None:
                if lookup and pending.lookups_left is not None:
                    pending.lookups_left -= 1
                now = self.server_time_ms()
                due = pending.final_at_ms is not None and now >= pending.final_at_ms
                counted_out = pending.lookups_left is not None and pending.lookups_left <= 0
                if counted_out or due:
                    del self.pending[order["orderId"]]
                    order.clear()
                    order.update(pending.final, updated=max(now, pending.final["created"]))
                    self._publish(order)
            return copy.deepcopy(order)

    def find_order(self, market: str, order_id: str | None, client_order_id: str | None):
        """The order as this lookup sees it (a copy), or None."""
        with self.lock:
            for order in reversed(self.orders):
                if order["market"] != market:
                    continue
                if client_order_id is not None:
                    if order.get("clientOrderId") != client_order_id:
                        continue
                    view = self.seen(order, lookup=True)
                    open_order = view["status"] in ("new", "partiallyFilled")
                    # Bitvavo may not find closed orders by clientOrderId: model the worst case.
                    if open_order or self.lookup_closed_by_client_order_id:
                        return view
                    continue
                if order["orderId"] == order_id:
                    return self.seen(order, lookup=True)
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
            return [self.seen(o, lookup=True) for o in list(reversed(rows))[:limit]]

    def open_orders(self, market: str | None) -> list[dict]:
        with self.lock:
            mine = [o for o in self.orders if market in (None, o["market"])]
            views = [self.seen(o, lookup=False) for o in mine]
        return [view for view in reversed(views) if view["status"] in ("new", "partiallyFilled")]

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
