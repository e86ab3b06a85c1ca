"""Key self-checks without risk: what a key may do, learned from a harmless probe.

No endpoint reports a key's permissions. Cancelling a random order id cannot cancel anything:
a key that may trade gets 240 (no such order), a view-only key gets 310 (no permission).

The worker start-up checks (hooked into Celery's worker_init through `exchange_check`):
- scan worker: `assert_scan_key_cannot_trade()` and `assert_no_trade_key_in_environment()`;
- execute worker: `assert_trade_key_present()`.
Each returns None or raises an ExchangeError whose code says what is wrong.
"""

from __future__ import annotations

import os

from django.conf import settings

from exchange.errors import ExchangeConfigurationError
from exchange.transport import probe_can_trade


def assert_scan_key_cannot_trade() -> None:
    """The read-only key is set and may not trade (a scan worker with a trade key must not run)."""
    from exchange.readonly import ReadonlyClient

    client = ReadonlyClient()
    if not client.has_key:
        raise ExchangeConfigurationError(
            "BITVAVO_READONLY_KEY and BITVAVO_READONLY_SECRET are not set.",
            code="READONLY_KEY_MISSING",
        )
    if probe_can_trade(client._transport, operator_id=settings.BITVAVO_OPERATOR_ID):
        raise ExchangeConfigurationError(
            "The read-only key MAY TRADE: use a key with the View permission only.",
            code="READONLY_KEY_CAN_TRADE",
        )


def assert_no_trade_key_in_environment() -> None:
    """Only the execute worker may hold the trade key; any other process must not even see it."""
    if os.environ.get("BITVAVO_TRADE_KEY") or os.environ.get("BITVAVO_TRADE_SECRET"):
        raise ExchangeConfigurationError(
            "This process holds BITVAVO_TRADE_KEY/SECRET; only the execute worker may.",
            code="TRADE_KEY_OUTSIDE_EXECUTOR",
        )


def assert_trade_key_present() -> None:
    """The execute worker's trade key is set, usable here, and may trade.

    Raises TRADE_CLIENT_WRONG_ROLE, LIVE_TRADING_OFF, OPERATOR_ID_INVALID, TRADE_KEY_MISSING
    or TRADE_KEY_CANNOT_TRADE (a view key in the trade key's place), or the probe's error.
    """
    from exchange.orders import TradeClient  # only the execute worker loads the trade client

    if not TradeClient().can_trade():
        raise ExchangeConfigurationError(
            "The trade key may NOT trade: it lacks the Trade permission.",
            code="TRADE_KEY_CANNOT_TRADE",
        )
