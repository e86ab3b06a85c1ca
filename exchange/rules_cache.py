"""The market's rules (status, decimals, minimums) as the exchange publishes them, cached.

Public data read with the read-only client, so any process (web previews, the execute
worker) may use it without ever loading the trade client.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache

from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from exchange.rules import MarketRules

logger = logging.getLogger(__name__)

# The rules this process has read, with when they were read from the exchange.
_rules_seen: dict[str, tuple[MarketRules, float]] = {}


def market_rules(market: str) -> MarketRules | None:
    """The market's rules, at most MARKET_RULES_CACHE_SECONDS old; None if unreadable.

    The age counts from the exchange read: the shared cache keeps them that long, and this
    process keeps its copy no longer, which saves a cache round trip per order without
    making them any older. Preflight checks them and the send step applies them to the order.
    """
    seen = _rules_seen.get(market)
    if seen is not None and time.time() - seen[1] < settings.MARKET_RULES_CACHE_SECONDS:
        return seen[0]
    key = f"trading:market-rules:v2:{market}"
    seen = cache.get(key)
    if seen is None:
        try:
            rules = ReadonlyClient().market(market)
        except ExchangeError:
            logger.warning("market rules unavailable for %s", market, exc_info=True)
            return None
        if rules is None:
            return None
        seen = (rules, time.time())
        cache.set(key, seen, settings.MARKET_RULES_CACHE_SECONDS)
    _rules_seen[market] = seen
    return seen[0]


def market_rules_forget() -> None:
    """Drops this process's copies (the shared cache is cleared on its own)."""
    _rules_seen.clear()
