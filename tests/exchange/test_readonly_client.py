"""The scanner's read-only client over real HTTP against the simulator."""

from decimal import Decimal
from itertools import pairwise

import pytest

from exchange.errors import ExchangeRejected
from exchange.models import BalanceSnapshot
from exchange.orders import TradeClient
from exchange.readonly import ReadonlyClient, price_change, volatility
from exchange.selectors import balance_latest
from exchange.services import balances_refresh

pytestmark = pytest.mark.django_db


def public_methods(cls):
    return {name for name in dir(cls) if not name.startswith("_")}


def test_the_read_only_client_has_no_order_method():
    assert public_methods(ReadonlyClient) == {
        "time",
        "markets",
        "market",
        "ticker_price",
        "ticker_book",
        "ticker_24h",
        "order_book",
        "candles",
        "balance",
        "has_key",
        "base_url",
    }
    assert not public_methods(ReadonlyClient) & public_methods(TradeClient)
    assert ReadonlyClient.__mro__ == (ReadonlyClient, object), "nothing inherited"


def test_market_rules_are_parsed(readonly_client):
    rules = readonly_client.market("BTC-EUR")
    assert rules.status == "trading"
    assert rules.tick_size == Decimal("1.00")
    assert (rules.quantity_decimals, rules.notional_decimals) == (8, 2)
    assert rules.min_order_in_quote_asset == Decimal("5.00")
    markets = {m.market: m for m in readonly_client.markets()}
    assert {"BTC-EUR", "ETH-EUR"} <= set(markets)
    assert markets["ETH-EUR"].tick_size == Decimal("0.01")


def test_a_halted_market_shows_its_status(readonly_client, exchange):
    exchange.control.set_market_status("ETH-EUR", "halted")
    assert readonly_client.market("ETH-EUR").status == "halted"


def test_prices_and_books_are_decimals(readonly_client):
    price = readonly_client.ticker_price("BTC-EUR")
    assert isinstance(price, Decimal) and price > 0
    book = readonly_client.ticker_book("BTC-EUR")
    assert book["bid"] < book["ask"] and isinstance(book["bidSize"], Decimal)
    day = readonly_client.ticker_24h("ETH-EUR")
    assert day["low"] <= day["last"] <= day["high"]
    depth = readonly_client.order_book("BTC-EUR", depth=5)
    assert len(depth["bids"]) == 5
    assert depth["bids"][0][0] > depth["bids"][1][0], "best bid first"
    assert depth["asks"][0][0] < depth["asks"][1][0], "best ask first"


def test_candles_come_newest_first_as_decimals(readonly_client):
    candles = readonly_client.candles("BTC-EUR", interval="1h", limit=24)
    assert len(candles) == 24
    assert [c.timestamp_ms for c in candles] == sorted(
        (c.timestamp_ms for c in candles), reverse=True
    )
    assert candles[0].timestamp_ms - candles[1].timestamp_ms == 3_600_000
    assert all(isinstance(c.close, Decimal) and c.low <= c.close <= c.high for c in candles)
    # Each candle opens where the one before it closed: one continuous walk.
    assert all(newer.open == older.close for newer, older in pairwise(candles))


def test_the_window_helpers():
    from exchange.readonly import Candle

    def candle(minute, open_, close):
        return Candle(minute, Decimal(open_), Decimal(close), Decimal(close), Decimal(close), 0)

    newest_first = [candle(3, "110", "121"), candle(2, "100", "110"), candle(1, "100", "100")]
    assert price_change(newest_first) == Decimal("0.21")
    assert volatility(newest_first) == Decimal("0")  # +10%, +10%: steady
    assert volatility([candle(3, "1", "1"), candle(2, "1", "2"), candle(1, "1", "1")]) == (
        Decimal("0.75")
    )
    assert price_change([]) == 0 and volatility([]) == 0


def test_balances_are_read_with_the_view_key_and_snapshotted(readonly_client, exchange):
    balances = {b.symbol: b.available for b in readonly_client.balance()}
    assert balances["EUR"] == Decimal("10000")
    exchange.control.set_balance("EUR", "1234.5")
    assert balances_refresh() == 3
    available, fetched_at = balance_latest("EUR")
    assert available == Decimal("1234.5") and fetched_at is not None
    assert BalanceSnapshot.objects.get(asset="BTC").available == Decimal("0.5")
    assert balance_latest("DOGE") is None


def test_an_asset_gone_from_the_account_is_snapshotted_as_zero(exchange):
    exchange.control.set_balance("ETH", "0")
    balances_refresh()
    assert balance_latest("ETH")[0] == 0


def test_the_trade_key_cannot_read_balances(exchange, monkeypatch):
    monkeypatch.setenv("BITVAVO_READONLY_KEY", exchange.server.trade_pair[0])
    monkeypatch.setenv("BITVAVO_READONLY_SECRET", exchange.server.trade_pair[1])
    with pytest.raises(ExchangeRejected) as caught:
        ReadonlyClient().balance()
    assert (caught.value.code, caught.value.bitvavo_error_code) == (
        "EXCHANGE_PERMISSION_DENIED",
        311,
    )
