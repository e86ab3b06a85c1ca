"""Both clients over real HTTP against the simulator."""

import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command

from exchange.errors import (
    ExchangeConfigurationError,
    ExchangeNotSent,
    ExchangeOutcomeUnknown,
    ExchangeRateLimited,
    ExchangeRejected,
)
from exchange.models import BalanceSnapshot, ExchangeCall
from exchange.orders import TradeClient
from exchange.readonly import ReadonlyClient, price_change, volatility
from exchange.selectors import balance_latest

pytestmark = pytest.mark.django_db


def place(client, **changes):
    fields = {
        "market": "BTC-EUR",
        "side": "buy",
        "client_order_id": uuid.uuid4(),
        "amount_quote": Decimal("20"),
    }
    return client.place_market_order(**{**fields, **changes})


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
    }
    assert not public_methods(ReadonlyClient) & public_methods(TradeClient)


def test_the_trade_client_has_no_market_data_method():
    assert public_methods(TradeClient) == {
        "place_market_order",
        "get_order",
        "list_orders",
        "list_trades",
        "cancel_order",
        "can_trade",
    }


@pytest.mark.parametrize("role", ["web", "scan", "beat", ""])
def test_a_trade_client_is_refused_outside_the_execute_role(exchange, monkeypatch, role):
    monkeypatch.setenv("ORACLE_ROLE", role)
    with pytest.raises(ExchangeConfigurationError) as caught:
        TradeClient()
    assert caught.value.code == "TRADE_CLIENT_WRONG_ROLE"


def test_a_trade_client_without_its_key_is_refused(exchange, monkeypatch):
    monkeypatch.delenv("BITVAVO_TRADE_KEY")
    with pytest.raises(ExchangeConfigurationError) as caught:
        TradeClient()
    assert caught.value.code == "TRADE_KEY_MISSING"


def test_paper_mode_refuses_bitvavos_own_host(exchange, settings):
    settings.LIVE_TRADING = False
    with pytest.raises(ExchangeConfigurationError) as caught:
        TradeClient(base_url="https://api.bitvavo.com/v2")
    assert caught.value.code == "LIVE_TRADING_OFF"


def test_market_data_is_parsed_to_decimals(exchange):
    client = ReadonlyClient()
    rules = client.market("BTC-EUR")
    assert rules.status == "trading" and rules.min_order_in_quote_asset == Decimal("5.00")
    assert isinstance(client.ticker_price("BTC-EUR"), Decimal)
    candles = client.candles("BTC-EUR", interval="1h", limit=24)
    assert len(candles) == 24
    assert candles[0].timestamp_ms > candles[-1].timestamp_ms, "newest first"
    assert all(c.low <= c.close <= c.high for c in candles)
    assert isinstance(price_change(candles), Decimal)
    assert volatility(candles) >= 0
    assert set(client.ticker_24h("ETH-EUR")) >= {"open", "high", "low", "last", "volume"}


def test_balances_are_read_with_the_view_key_and_snapshotted(exchange):
    balances = {b.symbol: b.available for b in ReadonlyClient().balance()}
    assert balances["EUR"] == Decimal("10000")
    available, fetched_at = balance_latest("EUR")
    assert available == Decimal("10000") and fetched_at is not None
    assert BalanceSnapshot.objects.filter(asset="BTC").exists()


def test_the_trade_key_cannot_read_balances(exchange, monkeypatch):
    monkeypatch.setenv("BITVAVO_READONLY_KEY", exchange.server.trade_pair[0])
    monkeypatch.setenv("BITVAVO_READONLY_SECRET", exchange.server.trade_pair[1])
    with pytest.raises(ExchangeRejected) as caught:
        ReadonlyClient().balance()
    assert (caught.value.code, caught.value.bitvavo_error_code) == (
        "EXCHANGE_PERMISSION_DENIED",
        311,
    )


def test_a_market_order_fills_and_is_audited(exchange):
    client_order_id = uuid.uuid4()
    order = place(TradeClient(), client_order_id=client_order_id)
    assert order["status"] == "filled"
    assert order["clientOrderId"] == str(client_order_id)
    assert Decimal(order["filledAmount"]) > 0
    assert exchange.orders()[0]["operatorId"] == 1
    call = ExchangeCall.objects.get(client_order_id=client_order_id)
    assert (call.method, call.path, call.status_code) == ("POST", "/v2/order", 200)
    assert call.request_body["operatorId"] == 1 and call.request_body["amountQuote"] == "20"
    assert "secret" not in str(call.request_body).lower()


def test_an_order_is_found_by_id_and_listed(exchange):
    client = TradeClient()
    order = place(client)
    found = client.get_order(market="BTC-EUR", order_id=order["orderId"])
    assert found["orderId"] == order["orderId"]
    listed = client.list_orders(market="BTC-EUR", start_ms=0, end_ms=order["created"] + 1)
    assert [o["orderId"] for o in listed] == [order["orderId"]]
    trades = client.list_trades(market="BTC-EUR", start_ms=0, end_ms=order["created"] + 1)
    assert trades[0]["orderId"] == order["orderId"]
    assert client.get_order(market="BTC-EUR", order_id=str(uuid.uuid4())) is None


@pytest.mark.parametrize(
    "changes, setup, code, bitvavo_code",
    [
        ({"amount_quote": Decimal("2")}, None, "EXCHANGE_BELOW_MINIMUM", 217),
        ({"amount_quote": Decimal("20000")}, None, "EXCHANGE_INSUFFICIENT_BALANCE", 216),
        ({}, ("status", "halted"), "EXCHANGE_MARKET_NOT_TRADING", 423),
        ({}, ("status", "auction"), "EXCHANGE_MARKET_NOT_TRADING", 425),
        ({"amount_quote": Decimal("20.123")}, None, "EXCHANGE_TOO_MANY_DECIMALS", 429),
        ({"market": "NOPE-EUR"}, None, "EXCHANGE_INVALID_PARAMETER", 205),
    ],
)
def test_definite_refusals_are_rejected(exchange, changes, setup, code, bitvavo_code):
    if setup:
        exchange.control.set_market_status("BTC-EUR", setup[1])
    with pytest.raises(ExchangeRejected) as caught:
        place(TradeClient(), **changes)
    assert caught.value.kind == "rejected"
    assert (caught.value.code, caught.value.bitvavo_error_code) == (code, bitvavo_code)
    assert exchange.orders() == []


def test_a_view_key_cannot_place_an_order(exchange, monkeypatch):
    monkeypatch.setenv("BITVAVO_TRADE_KEY", exchange.server.readonly_pair[0])
    monkeypatch.setenv("BITVAVO_TRADE_SECRET", exchange.server.readonly_pair[1])
    with pytest.raises(ExchangeRejected) as caught:
        place(TradeClient())
    assert caught.value.bitvavo_error_code == 310
    assert exchange.orders() == []


def test_a_wrong_secret_is_a_bad_signature(exchange, monkeypatch):
    monkeypatch.setenv("BITVAVO_TRADE_SECRET", "not-the-secret")
    with pytest.raises(ExchangeRejected) as caught:
        place(TradeClient())
    assert caught.value.code == "EXCHANGE_BAD_SIGNATURE"


@pytest.mark.parametrize(
    "fault, code, placed",
    [
        ("drop_after_commit", "EXCHANGE_CONNECTION_LOST", 1),
        ("error_101_after_commit", "EXCHANGE_OUTCOME_UNKNOWN", 1),
        ("error_109_after_commit", "EXCHANGE_ENGINE_TIMEOUT", 1),
        ("error_109_no_commit", "EXCHANGE_ENGINE_TIMEOUT", 0),
        ("html_502_no_commit", "EXCHANGE_BAD_RESPONSE", 0),
    ],
)
def test_uncertain_answers_are_unknown_outcomes_and_audited(exchange, fault, code, placed):
    exchange.control.inject(fault)
    client_order_id = uuid.uuid4()
    with pytest.raises(ExchangeOutcomeUnknown) as caught:
        place(TradeClient(), client_order_id=client_order_id)
    assert (caught.value.kind, caught.value.code) == ("unknown", code)
    assert len(exchange.orders()) == placed
    call = ExchangeCall.objects.get(client_order_id=client_order_id)
    assert call.error_kind == "unknown" and call.error_code == code


def test_a_read_timeout_is_an_unknown_outcome(exchange, settings):
    settings.BITVAVO_READ_TIMEOUT = 0.2
    exchange.control.inject("latency", seconds=1.0)
    with pytest.raises(ExchangeOutcomeUnknown) as caught:
        place(TradeClient())
    assert caught.value.code == "EXCHANGE_TIMEOUT"


def test_a_refused_connection_is_not_sent(exchange, settings):
    settings.BITVAVO_API_URL = "http://127.0.0.1:9/v2"
    with pytest.raises(ExchangeNotSent) as caught:
        ReadonlyClient().time()
    assert caught.value.kind == "not_sent"


def test_a_ban_is_shared_and_nothing_is_sent_while_it_lasts(exchange):
    exchange.control.inject("ban_429", seconds=30)
    first = TradeClient()
    with pytest.raises(ExchangeRateLimited) as caught:
        place(first)
    assert caught.value.code == "EXCHANGE_BANNED"
    assert 25 < caught.value.extra["retry_after_seconds"] <= 30

    # Another client on the same key (another process, sharing Redis) refuses to send.
    exchange.control.reset()  # even if the exchange would now accept, we wait out the ban
    second = TradeClient()
    with pytest.raises(ExchangeRateLimited) as caught:
        place(second)
    assert caught.value.code == "EXCHANGE_BANNED"
    assert exchange.orders() == []
    refused = ExchangeCall.objects.filter(error_code="EXCHANGE_BANNED", status_code=None)
    assert refused.count() == 1, "the refusal is audited with no response: nothing was sent"


def test_rate_limit_headers_are_recorded(exchange):
    from exchange.transport import RateLimitState

    ReadonlyClient().balance()
    state = RateLimitState(exchange.server.readonly_pair[0]).get()
    assert 0 < state["remaining"] < 1000
    assert state["reset_at_ms"] > 0


def test_exchange_check_passes_with_the_right_keys(exchange, capsys):
    call_command("exchange_check")
    out = capsys.readouterr().out
    assert "read-only key: may not trade" in out
    assert "trade key: may trade" in out
    assert "all checks passed" in out


def test_exchange_check_fails_clearly_with_swapped_keys(exchange, monkeypatch, capsys):
    readonly, trade = exchange.server.readonly_pair, exchange.server.trade_pair
    monkeypatch.setenv("BITVAVO_READONLY_KEY", trade[0])
    monkeypatch.setenv("BITVAVO_READONLY_SECRET", trade[1])
    monkeypatch.setenv("BITVAVO_TRADE_KEY", readonly[0])
    monkeypatch.setenv("BITVAVO_TRADE_SECRET", readonly[1])
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("exchange_check")
    out = capsys.readouterr().out
    assert "PROBLEM  read-only key: cannot read balances" in out
    assert "PROBLEM  read-only key: MAY TRADE" in out
    assert "PROBLEM  trade key: may NOT trade" in out
