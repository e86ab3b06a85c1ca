"""The scan's market data step: read-only client in, a compact snapshot out."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache

from evaluation.indicators import timeframe_summary
from exchange.readonly import Candle, ReadonlyClient, price_change, volatility

CANDLE_INTERVAL = "1h"
CANDLE_COUNT = 24
PLACES = Decimal("0.000001")
# The timeframes the advisor sees, with how many candles each (enough for EMA 20 and RSI 14).
TIMEFRAMES = {"1h": 48, "4h": 42, "1d": 30}
# One process reads a missing market while the others wait this long for its result at most.
READ_LOCK_SECONDS = 10
WAIT_POLL_SECONDS = 0.05


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
    Values are Decimal or None, never float. Each market is read from the exchange at most
    once per MARKET_SNAPSHOT_CACHE_SECONDS bucket, whoever asks (market_features_shared)."""
    return {market: market_features_shared(client=client, market=market) for market in markets}


def market_features_read(*, client: ReadonlyClient, market: str) -> dict:
    """One market's features, read from the exchange now (1 + len(TIMEFRAMES) requests)."""
    day = client.ticker_24h(market)
    candles = {
        interval: client.candles(market, interval=interval, limit=count)
        for interval, count in TIMEFRAMES.items()
    }
    return market_features(day=day, candles=candles)


def market_features_shared(*, client: ReadonlyClient, market: str) -> dict:
    """One market's features as every scan in this time bucket sees them.

    The bucket is aligned to the clock, so all processes agree on it. The first scan to miss
    takes a short lock (an atomic add in the cache) and reads; the others wait for its result
    instead of all reading at once, and read for themselves only if it never comes (the
    reader died or failed). With a bucket of 0 seconds every scan reads for itself.
    """
    seconds = settings.MARKET_SNAPSHOT_CACHE_SECONDS
    if seconds <= 0:
        return market_features_read(client=client, market=market)
    bucket = int(time.time()) // seconds
    key = f"market:features:{client.base_url}:{market}:{bucket}"
    lock = f"{key}:lock"
    deadline = time.monotonic() + READ_LOCK_SECONDS
    while True:
        features = cache.get(key)
        if features is not None:
            return features
        token = uuid.uuid4().hex
        if cache.add(lock, token, timeout=READ_LOCK_SECONDS):
            try:
                # A reader may have stored it and let go between our miss and our lock.
                features = cache.get(key)
                if features is None:
                    features = market_features_read(client=client, market=market)
                    cache.set(key, features, timeout=seconds + READ_LOCK_SECONDS)
                return features
            finally:
                if cache.get(lock) == token:
                    cache.delete(lock)
        if time.monotonic() >= deadline:
            return market_features_read(client=client, market=market)
        time.sleep(WAIT_POLL_SECONDS)
