"""The scanner's client: market data and balances with the read-only key. No order methods.

The key is read from the environment when the client is built; public market data needs
no key at all, so a process without one (the executor, the web) can still read rules and
prices, never balances.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from decimal import Decimal

from exchange.rules import MarketRules
from exchange.transport import Transport


@dataclass(frozen=True)
class Candle:
    timestamp_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Balance:
    symbol: str
    available: Decimal
    in_order: Decimal


class ReadonlyClient:
    def __init__(self, *, base_url: str | None = None) -> None:
        self._transport = Transport(
            api_key=os.environ.get("BITVAVO_READONLY_KEY") or None,
            api_secret=os.environ.get("BITVAVO_READONLY_SECRET") or None,
            key_role="readonly",
            base_url=base_url,
        )

    @property
    def base_url(self) -> str:
        """Which exchange this client reads: part of any shared cache key of its data."""
        return self._transport.base_url

    @property
    def has_key(self) -> bool:
        return bool(self._transport.api_key)

    def time(self) -> int:
        return int(self._transport.request("GET", "/time", signed=False)["time"])

    def markets(self) -> list[MarketRules]:
        return [MarketRules.from_api(m) for m in self._transport.request("GET", "/markets")]

    def market(self, market: str) -> MarketRules | None:
        data = self._transport.request("GET", "/markets", params={"market": market})
        if isinstance(data, list):  # filtered lists come back as one object; be lenient
            data = data[0] if data else None
        return MarketRules.from_api(data) if data else None

    def ticker_price(self, market: str) -> Decimal:
        data = self._transport.request("GET", "/ticker/price", params={"market": market})
        return Decimal(_one(data)["price"])

    def ticker_book(self, market: str) -> dict:
        data = _one(self._transport.request("GET", "/ticker/book", params={"market": market}))
        return {k: Decimal(v) if k != "market" and v is not None else v for k, v in data.items()}

    def ticker_24h(self, market: str) -> dict:
        data = _one(self._transport.request("GET", "/ticker/24h", params={"market": market}))
        return {
            key: Decimal(value) if isinstance(value, str) and key != "market" else value
            for key, value in data.items()
        }

    def order_book(self, market: str, *, depth: int = 25) -> dict:
        data = self._transport.request("GET", f"/{market}/book", params={"depth": depth})
        return {
            "bids": [(Decimal(p), Decimal(s)) for p, s in data["bids"]],
            "asks": [(Decimal(p), Decimal(s)) for p, s in data["asks"]],
            "timestamp": data.get("timestamp"),
        }

    def candles(
        self,
        market: str,
        *,
        interval: str = "1h",
        limit: int = 24,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Candle]:
        """Candles newest first, as Bitvavo sends them, parsed to Decimal."""
        rows = self._transport.request(
            "GET",
            f"/{market}/candles",
            params={"interval": interval, "limit": limit, "start": start_ms, "end": end_ms},
        )
        return [Candle(int(r[0]), *(Decimal(v) for v in r[1:6])) for r in rows]

    def balance(self, symbol: str | None = None) -> list[Balance]:
        rows = self._transport.request("GET", "/balance", params={"symbol": symbol}, weight=5)
        return [Balance(r["symbol"], Decimal(r["available"]), Decimal(r["inOrder"])) for r in rows]


def _one(data):
    return data[0] if isinstance(data, list) else data


def price_change(candles: list[Candle]) -> Decimal:
    """Relative change from the oldest open to the newest close (0.05 is +5%)."""
    if not candles:
        return Decimal("0")
    oldest, newest = candles[-1], candles[0]
    return (newest.close - oldest.open) / oldest.open if oldest.open else Decimal("0")


def volatility(candles: list[Candle]) -> Decimal:
    """Standard deviation of the candle-to-candle returns."""
    closes = [c.close for c in reversed(candles)]
    returns = [(b - a) / a for a, b in zip(closes, closes[1:], strict=False) if a]
    return Decimal(statistics.pstdev(returns)) if len(returns) > 1 else Decimal("0")
