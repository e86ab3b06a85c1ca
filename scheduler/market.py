"""The scan's market data step: read-only client in, a compact snapshot out."""

from __future__ import annotations

from decimal import Decimal

from exchange.readonly import ReadonlyClient, price_change, volatility

CANDLE_INTERVAL = "1h"
CANDLE_COUNT = 24
PLACES = Decimal("0.000001")


def market_snapshot_build(*, client: ReadonlyClient, markets: list[str]) -> dict[str, dict]:
    """Per market: last price, 24 h open/high/low/volume, the 24 h move and the hourly
    volatility (both relative: 0.012 is 1.2%). Values are Decimal or None, never float."""
    snapshot = {}
    for market in markets:
        day = client.ticker_24h(market)
        candles = client.candles(market, interval=CANDLE_INTERVAL, limit=CANDLE_COUNT)
        snapshot[market] = {
            "last": day.get("last"),
            "open_24h": day.get("open"),
            "high_24h": day.get("high"),
            "low_24h": day.get("low"),
            "volume_24h": day.get("volume"),
            "change_24h": price_change(candles).quantize(PLACES),
            "volatility_1h": volatility(candles).quantize(PLACES),
        }
    return snapshot
