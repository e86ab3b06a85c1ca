"""The executor's client: orders with the trade key. No market-data methods.

The only module that reads the trade key, and only when a client is built in the executor
role (ORACLE_ROLE=execute). Without LIVE_TRADING it refuses to talk to Bitvavo's own host:
paper mode against the simulator is the default, live trading an explicit decision.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings

from exchange.errors import ExchangeConfigurationError, ExchangeRejected
from exchange.keycheck import probe_can_trade
from exchange.rules import format_decimal
from exchange.transport import Transport

LIVE_HOSTS = {"api.bitvavo.com"}


def _role() -> str:
    return os.environ.get("ORACLE_ROLE") or settings.ORACLE_ROLE


class TradeClient:
    def __init__(self, *, base_url: str | None = None) -> None:
        if _role() != "execute":
            raise ExchangeConfigurationError(
                f"A trade client can only be built by the execute worker, not in role {_role()!r}.",
                code="TRADE_CLIENT_WRONG_ROLE",
            )
        base_url = base_url or settings.BITVAVO_API_URL
        if urlsplit(base_url).hostname in LIVE_HOSTS and not settings.LIVE_TRADING:
            raise ExchangeConfigurationError(
                "Refusing to send orders to Bitvavo itself: LIVE_TRADING is off (paper mode).",
                code="LIVE_TRADING_OFF",
            )
        key = os.environ.get("BITVAVO_TRADE_KEY", "")
        secret = os.environ.get("BITVAVO_TRADE_SECRET", "")
        if not (key and secret):
            raise ExchangeConfigurationError(
                "BITVAVO_TRADE_KEY and BITVAVO_TRADE_SECRET are not set.",
                code="TRADE_KEY_MISSING",
            )
        self._transport = Transport(
            api_key=key, api_secret=secret, key_role="trade", base_url=base_url
        )
        self.operator_id = settings.BITVAVO_OPERATOR_ID

    def place_market_order(
        self,
        *,
        market: str,
        side: str,
        client_order_id: uuid.UUID,
        amount_quote: Decimal | None = None,
        amount: Decimal | None = None,
    ) -> dict:
        if (amount is None) == (amount_quote is None):
            raise ExchangeRejected(
                "A market order needs exactly one of amount and amount_quote.",
                code="EXCHANGE_INVALID_PARAMETER",
            )
        body = {
            "market": market,
            "side": side,
            "orderType": "market",
            "clientOrderId": str(client_order_id),
            "operatorId": self.operator_id,  # a JSON number, never a string
        }
        if amount_quote is not None:
            body["amountQuote"] = format_decimal(amount_quote)
        else:
            body["amount"] = format_decimal(amount)
        return self._transport.request(
            "POST", "/order", body=body, audit=True, client_order_id=str(client_order_id)
        )

    def get_order(
        self, *, market: str, order_id: str | None = None, client_order_id: uuid.UUID | None = None
    ) -> dict | None:
        params = {"market": market, "orderId": order_id}
        if client_order_id is not None:
            params = {"market": market, "clientOrderId": str(client_order_id)}
        try:
            return self._transport.request(
                "GET",
                "/order",
                params=params,
                audit=True,
                client_order_id=str(client_order_id) if client_order_id else None,
            )
        except ExchangeRejected as error:
            if error.bitvavo_error_code == 240:
                return None
            raise

    def list_orders(self, *, market: str, start_ms: int, end_ms: int, limit: int = 1000) -> list:
        return self._transport.request(
            "GET",
            "/orders",
            params={"market": market, "start": start_ms, "end": end_ms, "limit": limit},
            weight=5,
            audit=True,
        )

    def list_trades(self, *, market: str, start_ms: int, end_ms: int, limit: int = 1000) -> list:
        return self._transport.request(
            "GET",
            "/trades",
            params={"market": market, "start": start_ms, "end": end_ms, "limit": limit},
            weight=5,
            audit=True,
        )

    def cancel_order(
        self, *, market: str, order_id: str | None = None, client_order_id: uuid.UUID | None = None
    ) -> dict:
        params = {"market": market, "orderId": order_id, "operatorId": self.operator_id}
        if client_order_id is not None:
            params["clientOrderId"] = str(client_order_id)
        return self._transport.request("DELETE", "/order", params=params, audit=True)

    def can_trade(self) -> bool:
        """Harmless probe: cancelling a random order id answers 240 for a trade key."""
        return probe_can_trade(self._transport, operator_id=self.operator_id)
