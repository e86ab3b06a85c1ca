"""What the exchange says a market is worth now, read with the read-only client (public
market data: no key needed), cached briefly in the shared cache so a page of positions costs
the exchange at most two reads per market per window. A price that cannot be read is an
answer with a code and a reason, never an exception."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache

from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient

logger = logging.getLogger(__name__)

PRICE_UNAVAILABLE = "PRICE_UNAVAILABLE"


@dataclass(frozen=True)
class Quote:
    market: str
    price: Decimal | None
    quantity_decimals: int | None
    error_code: str = ""
    error_message: str = ""


def market_quote(market: str, *, client: ReadonlyClient | None = None) -> Quote:
    """The market's last price and its quantity decimals (None where unreadable)."""
    client = client or ReadonlyClient()
    price = _cached(
        f"portfolio:price:v1:{market}",
        settings.PORTFOLIO_PRICE_CACHE_SECONDS,
        lambda: client.ticker_price(market),
    )
    decimals = _cached(
        f"portfolio:quantity-decimals:v1:{market}",
        settings.MARKET_RULES_CACHE_SECONDS,
        lambda: _quantity_decimals(client, market),
    )
    quantity_decimals = decimals[1] if decimals[0] == "ok" else None
    if price[0] != "ok":
        return Quote(
            market=market,
            price=None,
            quantity_decimals=quantity_decimals,
            error_code=PRICE_UNAVAILABLE,
            error_message=f"The last price of {market} could not be read ({price[1]}).",
        )
    return Quote(market=market, price=price[1], quantity_decimals=quantity_decimals)


def currency_rate_at(currency: str, at: datetime, *, client: ReadonlyClient | None = None):
    """The EUR price of `currency` in the minute of `at` (the close of that minute's candle
    of <currency>-EUR), or None when the exchange has none. Past minutes do not change, so a
    found rate is kept a day."""
    market = f"{currency.upper()}-EUR"
    minute_ms = int(at.timestamp() // 60) * 60_000
    client = client or ReadonlyClient()

    def read():
        candles = client.candles(
            market, interval="1m", limit=1, start_ms=minute_ms, end_ms=minute_ms + 59_999
        )
        if not candles:
            raise LookupError(f"no candle of {market} at {minute_ms}")
        return candles[0].close

    rate = _cached(f"portfolio:rate:v1:{market}:{minute_ms}", 86_400, read)
    return rate[1] if rate[0] == "ok" else None


def _quantity_decimals(client: ReadonlyClient, market: str) -> int:
    rules = client.market(market)
    if rules is None:
        raise LookupError(f"the exchange does not list {market}")
    return rules.quantity_decimals


def _cached(key: str, seconds: int, read) -> tuple:
    """("ok", value) or ("error", "CODE: reason"), shared between processes for `seconds`:
    a failing exchange is asked again only after that, not on every page."""
    answer = cache.get(key)
    if answer is not None:
        return answer
    try:
        answer = ("ok", read())
    except ExchangeError as error:
        answer = ("error", f"{error.code}: {error.message}")
    except LookupError as error:
        answer = ("error", f"{PRICE_UNAVAILABLE}: {error}")
    if answer[0] == "error":
        logger.warning("portfolio valuation read failed: %s %s", key, answer[1])
    cache.set(key, answer, seconds)
    return answer
