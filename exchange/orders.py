"""The executor's client: orders with the trade key. No market-data methods.

The only module that reads the trade key, and only when a client is built in the executor
role (ORACLE_ROLE=execute). Without LIVE_TRADING it refuses to talk to Bitvavo's own host:
paper mode against the simulator is the default, live trading an explicit decision.

Orders come back parsed: money and quantities as Decimal (fills too), the rest as Bitvavo
sent it.
"""

from __future__ import annotations

import os
import time
import uuid
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings

from exchange.errors import ExchangeConfigurationError, ExchangeError, ExchangeRejected
from exchange.fills import order_is_final
from exchange.rules import MarketRules, format_decimal, order_violation, truncate
from exchange.transport import Transport, probe_can_trade

ORDER_DECIMALS = (
    "amount",
    "amountRemaining",
    "amountQuote",
    "amountQuoteRemaining",
    "price",
    "onHold",
    "filledAmount",
    "filledAmountQuote",
    "feePaid",
    "triggerAmount",
    "triggerPrice",
)
FILL_DECIMALS = ("amount", "price", "fee")
MAX_OPERATOR_ID = 2**63 - 1
# Between two lookups of an order that is not final yet: GET /order weighs 1, so a wait of
# EXECUTION_FILL_WAIT_SECONDS (2 s) costs at most ~10 points of the 1000 a minute.
FILL_POLL_SECONDS = 0.2


def _role() -> str:
    return os.environ.get("ORACLE_ROLE") or settings.ORACLE_ROLE


def is_bitvavo_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".")
    return host == "bitvavo.com" or host.endswith(".bitvavo.com")


class TradeClient:
    def __init__(self, *, base_url: str | None = None) -> None:
        if _role() != "execute":
            raise ExchangeConfigurationError(
                f"A trade client can only be built by the execute worker, not in role {_role()!r}.",
                code="TRADE_CLIENT_WRONG_ROLE",
            )
        base_url = base_url or settings.BITVAVO_API_URL
        if is_bitvavo_host(base_url) and not settings.LIVE_TRADING:
            raise ExchangeConfigurationError(
                "Refusing to send orders to Bitvavo itself: LIVE_TRADING is off (paper mode).",
                code="LIVE_TRADING_OFF",
            )
        operator_id = settings.BITVAVO_OPERATOR_ID
        if isinstance(operator_id, bool) or not isinstance(operator_id, int):
            operator_id = -1
        if not 1 <= operator_id <= MAX_OPERATOR_ID:
            raise ExchangeConfigurationError(
                "BITVAVO_OPERATOR_ID must be a whole number from 1 to 2^63-1.",
                code="OPERATOR_ID_INVALID",
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
        self.operator_id = operator_id

    def place_market_order(
        self,
        *,
        market: str,
        side: str,
        client_order_id: uuid.UUID,
        amount_quote: Decimal | None = None,
        amount: Decimal | None = None,
        rules: MarketRules | None = None,
    ) -> dict:
        """Places a market order for exactly one of `amount` (base) or `amount_quote`.

        With the market's `rules`, the amount is first cut to the allowed decimals and the
        market status and minimums are checked: a breach raises ExchangeRejected with the
        rule's code, and nothing is sent.
        """
        client_order_id = _uuid(client_order_id)
        if side not in ("buy", "sell"):
            raise _invalid(f"side must be buy or sell, not {side!r}.")
        if (amount is None) == (amount_quote is None):
            raise _invalid("A market order needs exactly one of amount and amount_quote.")
        value = amount if amount is not None else amount_quote
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise _invalid(f"The amount must be a positive Decimal, not {value!r}.")
        if rules is not None:
            if rules.market != market:
                raise _invalid(f"Rules of {rules.market} given for {market}.")
            if amount is not None:
                amount = truncate(amount, rules.quantity_decimals)
            else:
                amount_quote = truncate(amount_quote, rules.notional_decimals)
            violation = order_violation(rules, amount=amount, amount_quote=amount_quote)
            if violation:
                raise ExchangeRejected(
                    f"The order breaks {market}'s rules ({violation}); not sent.",
                    code=violation,
                    extra={"amount": str(amount), "amount_quote": str(amount_quote)},
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
        data = self._transport.request(
            "POST", "/order", body=body, audit=True, client_order_id=str(client_order_id)
        )
        return parse_order(data)

    def get_order(
        self, *, market: str, order_id: str | None = None, client_order_id: uuid.UUID | None = None
    ) -> dict | None:
        """The order, or None when Bitvavo finds none (240). The client order id wins.

        Bitvavo may not find a closed order by client order id: fall back to list_orders.
        """
        params = _order_ref(market, order_id, client_order_id)
        try:
            data = self._transport.request(
                "GET",
                "/order",
                params=params,
                audit=True,
                client_order_id=params.get("clientOrderId"),
            )
        except ExchangeRejected as error:
            if error.bitvavo_error_code == 240:
                return None
            raise
        return parse_order(data)

    def list_orders(
        self, *, market: str, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[dict]:
        """The market's orders created in [start_ms, end_ms], newest first (at most `limit`)."""
        rows = self._transport.request(
            "GET",
            "/orders",
            params={"market": market, "start": start_ms, "end": end_ms, "limit": limit},
            weight=5,
            audit=True,
        )
        return [parse_order(row) for row in rows]

    def list_trades(
        self, *, market: str, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[dict]:
        """The market's fills in [start_ms, end_ms], newest first, with their clientOrderId."""
        rows = self._transport.request(
            "GET",
            "/trades",
            params={"market": market, "start": start_ms, "end": end_ms, "limit": limit},
            weight=5,
            audit=True,
        )
        return [_decimals(row, FILL_DECIMALS) for row in rows]

    def cancel_order(
        self, *, market: str, order_id: str | None = None, client_order_id: uuid.UUID | None = None
    ) -> dict:
        """Cancels an open order; 233 (no longer active) and 240 (unknown) are rejections."""
        params = {**_order_ref(market, order_id, client_order_id), "operatorId": self.operator_id}
        return self._transport.request(
            "DELETE",
            "/order",
            params=params,
            audit=True,
            client_order_id=params.get("clientOrderId"),
        )

    def clock_offset_ms(self) -> int:
        """The exchange's clock minus ours (ms), as the transport compensates it."""
        return self._transport.clock_offset_ms()

    def exchange_now_ms(self) -> int:
        return self._transport.exchange_now_ms()

    def can_trade(self) -> bool:
        """Harmless probe: cancelling a random order id answers 240 for a trade key."""
        return probe_can_trade(self._transport, operator_id=self.operator_id)


def order_wait_final(
    client: TradeClient,
    order: dict,
    *,
    seconds: float | None = None,
    interval: float = FILL_POLL_SECONDS,
) -> dict:
    """The order (a POST /order answer) once it is final, looked up by its order id every
    `interval` for at most `seconds` (EXECUTION_FILL_WAIT_SECONDS); else the last answer,
    final or not, for the reconciler to go on from.

    A final answer returns at once, without a lookup. A failed lookup (rate limit, timeout)
    ends the wait: waiting must never turn into an unknown outcome. The bound is `seconds`
    plus at most one lookup's HTTP timeout. By order id, not client order id: Bitvavo may not
    find a closed order by its client order id.
    """
    seconds = settings.EXECUTION_FILL_WAIT_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + seconds
    last = order
    while not order_is_final(last) and order.get("orderId"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
        try:
            found = client.get_order(market=order["market"], order_id=order["orderId"])
        except ExchangeError:
            break
        if found is not None:
            last = found
    return last


def parse_order(data: dict) -> dict:
    """An order object with its money fields, and its fills', as Decimal."""
    order = _decimals(data, ORDER_DECIMALS)
    if "fills" in order:
        order["fills"] = [_decimals(fill, FILL_DECIMALS) for fill in order["fills"]]
    return order


def _decimals(data: dict, names: tuple[str, ...]) -> dict:
    return {
        key: Decimal(value) if key in names and isinstance(value, str) else value
        for key, value in data.items()
    }


def _uuid(value) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise _invalid(f"clientOrderId must be a UUID, not {value!r}.") from None


def _order_ref(market: str, order_id: str | None, client_order_id) -> dict:
    # Bitvavo uses clientOrderId when both are given; send only the one it will use.
    if client_order_id is not None:
        return {"market": market, "clientOrderId": str(_uuid(client_order_id))}
    if order_id:
        return {"market": market, "orderId": order_id}
    raise _invalid("An order is found by order_id or client_order_id; neither was given.")


def _invalid(message: str) -> ExchangeRejected:
    return ExchangeRejected(message, code="EXCHANGE_INVALID_PARAMETER")
