"""The scan's market data step: read-only client in, a compact snapshot out."""

from __future__ import annotations

from decimal import Decimal

from evaluation.indicators import timeframe_summary
from exchange.readonly import Candle, ReadonlyClient, price_change, volatility

CANDLE_INTERVAL = "1h"
CANDLE_COUNT = 24
PLACES = Decimal("0.000001")
# The timeframes the advisor sees, with how many candles each (enough for EMA 20 and RSI 14).
TIMEFRAMES = {"1h": 48, "4h": 42, "1d": 30}


def market_features(*, day: dict, candles: dict[str, list[Candle]]) -> dict:
    """One market's snapshot from its 24 h figures and its candles per timeframe (newest
    first, as Bitvavo sends them): the scan and the replay build it the same way."""
    hourly = candles[CANDLE_INTERVAL][:CANDLE_COUNT]
    return {
        "last": day.get("last"),
        "open_24h": day.get("open"),
        "high_24h": day.get("high"),
        "low_24h": day.get("low"),
        "volume_24h": day.get("volume"),
        "change_24h": price_change(hourly).quantize(PLACES),
        "volatility_1h": volatility(hourly).quantize(PLACES),
        "timeframes": {
            interval: timeframe_summary(list(reversed(rows))) for interval, rows in candles.items()
        },
    }


def market_snapshot_build(*, client: ReadonlyClient, markets: list[str]) -> dict[str, dict]:
    """Per market: last price, 24 h open/high/low/volume, the 24 h move and the hourly
    volatility (both relative: 0.012 is 1.2%), and a summary of 1 h, 4 h and 1 d candles.
    Values are Decimal or None, never float."""
    snapshot = {}
    for market in markets:
        day = client.ticker_24h(market)
        candles = {
            interval: client.candles(market, interval=interval, limit=count)
            for interval, count in TIMEFRAMES.items()
        }
        snapshot[market] = market_features(day=day, candles=candles)
    return snapshot
