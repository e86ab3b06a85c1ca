"""The executor's trade client over real HTTP against the simulator."""

import uuid
from decimal import Decimal

import pytest

from exchange.errors import ExchangeConfigurationError, ExchangeRejected
from exchange.models import ExchangeCall
from exchange.orders import TradeClient

pytestmark = pytest.mark.django_db


def place(client, **changes):
    fields = {
        "market": "BTC-EUR",
        "side": "buy",
        "client_order_id": uuid.uuid4(),
        "amount_quote": Decimal("20"),
    }
    return client.place_market_order(**{**fields, **changes})


def test_the_trade_client_has_no_market_data_method():
    assert {name for name in dir(TradeClient) if not name.startswith("_")} == {
        "place_market_order",
        "get_order",
        "list_orders",
        "list_trades",
        "clock_offset_ms",
        "exchange_now_ms",
        "cancel_order",
        "can_trade",
    }


@pytest.mark.parametrize("role", ["web", "scan", "beat", ""])
def test_a_trade_client_is_refused_outside_the_execute_role(exchange, monkeypatch, role):
    monkeypatch.setenv("ORACLE_ROLE", role)
    with pytest.raises(ExchangeConfigurationError) as caught:
        TradeClient()
    assert caught.value.code == "TRADE_CLIENT_WRONG_ROLE"


def test_the_role_falls_back_to_the_setting(exchange, monkeypatch, settings):
    monkeypatch.delenv("ORACLE_ROLE")
    settings.ORACLE_ROLE = "web"
    with pytest.raises(ExchangeConfigurationError):
        TradeClient()
    settings.ORACLE_ROLE = "execute"
    assert TradeClient().can_trade()


def test_a_trade_client_without_its_key_is_refused(exchange, monkeypatch):
    monkeypatch.delenv("BITVAVO_TRADE_KEY")
    with pytest.raises(ExchangeConfigurationError) as caught:
        TradeClient()
    assert caught.value.code == "TRADE_KEY_MISSING"


@pytest.mark.parametrize(
    "url", ["https://api.bitvavo.com/v2", "https://API.Bitvavo.com./v2", "https://bitvavo.com/v2"]
)
def test_paper_mode_refuses_bitvavos_own_host(exchange, settings, url):
    settings.LIVE_TRADING = False
    with pytest.raises(ExchangeConfigurationError) as caught:
        TradeClient(base_url=url)
    assert caught.value.code == "LIVE_TRADING_OFF"
    settings.LIVE_TRADING = True
    assert TradeClient(base_url=url)  # an explicit decision; nothing is sent here


@pytest.mark.parametrize("operator_id", [0, -5, "7", True, 2**63])
def test_the_operator_id_must_be_a_positive_int64(exchange, settings, operator_id):
    settings.BITVAVO_OPERATOR_ID = operator_id
    with pytest.raises(ExchangeConfigurationError) as caught:
        TradeClient()
    assert caught.value.code == "OPERATOR_ID_INVALID"


def test_a_market_order_fills_parsed_to_decimals_and_is_audited(trade_client, exchange):
    client_order_id = uuid.uuid4()
    order = place(trade_client, client_order_id=client_order_id)
    assert order["status"] == "filled" and order["clientOrderId"] == str(client_order_id)
    assert isinstance(order["filledAmount"], Decimal) and order["filledAmount"] > 0
    assert 0 < order["filledAmountQuote"] + order["feePaid"] <= Decimal("20")
    assert [type(f["price"]) for f in order["fills"]] == [Decimal]
    assert exchange.orders()[0]["operatorId"] == 1  # a JSON number
    call = ExchangeCall.objects.get(client_order_id=client_order_id)
    assert (call.key_role, call.method, call.path, call.status_code) == (
        "trade",
        "POST",
        "/v2/order",
        200,
    )
    assert call.request_body["operatorId"] == 1 and call.request_body["amountQuote"] == "20"
    assert call.response_body["orderId"] == order["orderId"] and call.latency_ms >= 0
    secret = exchange.server.trade_pair[1]
    assert secret not in str(call.request_body) + str(call.response_body) + call.path


def test_a_market_order_by_base_amount(trade_client, exchange):
    order = place(trade_client, side="sell", amount_quote=None, amount=Decimal("0.001"))
    assert order["filledAmount"] == Decimal("0.001")
    assert exchange.orders()[0]["amount"] == "0.001"


def test_market_rules_cut_the_amount_and_refuse_before_sending(trade_client, readonly_client):
    rules = readonly_client.market("BTC-EUR")
    order = place(trade_client, amount_quote=Decimal("20.999"), rules=rules)
    assert order["amountQuote"] == Decimal("20.99"), "cut, never rounded up"
    with pytest.raises(ExchangeRejected) as caught:
        place(trade_client, amount_quote=Decimal("4.999"), rules=rules)
    assert caught.value.code == "EXCHANGE_BELOW_MINIMUM"
    assert caught.value.bitvavo_error_code is None, "refused here, not by the exchange"
    assert ExchangeCall.objects.count() == 1, "the refused order was never sent"


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_quote": 20.0},
        {"amount_quote": Decimal("NaN")},
        {"amount_quote": Decimal("-1")},
        {"amount": Decimal("1")},
        {"amount_quote": None},
        {"side": "short"},
        {"client_order_id": "not-a-uuid"},
    ],
)
def test_malformed_orders_are_refused_before_sending(trade_client, exchange, changes):
    with pytest.raises(ExchangeRejected) as caught:
        place(trade_client, **changes)
    assert caught.value.code == "EXCHANGE_INVALID_PARAMETER"
    assert ExchangeCall.objects.count() == 0 and exchange.orders() == []


def test_an_order_is_found_by_id_and_listed(trade_client):
    order = place(trade_client)
    found = trade_client.get_order(market="BTC-EUR", order_id=order["orderId"])
    assert found == order
    listed = trade_client.list_orders(market="BTC-EUR", start_ms=0, end_ms=order["created"] + 1)
    assert [o["orderId"] for o in listed] == [order["orderId"]]
    trades = trade_client.list_trades(market="BTC-EUR", start_ms=0, end_ms=order["created"] + 1)
    assert trades[0]["orderId"] == order["orderId"]
    assert trades[0]["clientOrderId"] == order["clientOrderId"]
    assert isinstance(trades[0]["fee"], Decimal)
    assert trade_client.list_orders(market="BTC-EUR", start_ms=0, end_ms=order["created"] - 1) == []
    assert trade_client.get_order(market="BTC-EUR", order_id=str(uuid.uuid4())) is None


def test_a_filled_order_may_not_be_found_by_client_order_id(trade_client):
    # Bitvavo's clientOrderId lookup is only sure to find open orders: the simulator models
    # the worst case, so the reconciler must fall back to list_orders.
    client_order_id = uuid.uuid4()
    place(trade_client, client_order_id=client_order_id)
    assert trade_client.get_order(market="BTC-EUR", client_order_id=client_order_id) is None
    looked_up = ExchangeCall.objects.get(method="GET", client_order_id=client_order_id)
    assert looked_up.status_code == 404 and looked_up.error_code == "EXCHANGE_ORDER_NOT_FOUND"


def test_an_order_lookup_needs_an_id(trade_client):
    with pytest.raises(ExchangeRejected):
        trade_client.get_order(market="BTC-EUR")


def test_cancelling_a_filled_order_is_refused_and_audited(trade_client):
    client_order_id = uuid.uuid4()
    order = place(trade_client, client_order_id=client_order_id)
    with pytest.raises(ExchangeRejected) as caught:
        trade_client.cancel_order(market="BTC-EUR", order_id=order["orderId"])
    assert (caught.value.code, caught.value.bitvavo_error_code) == (
        "EXCHANGE_ORDER_NOT_ACTIVE",
        233,
    )
    with pytest.raises(ExchangeRejected) as caught:
        trade_client.cancel_order(market="BTC-EUR", client_order_id=client_order_id)
    assert caught.value.bitvavo_error_code == 240  # closed: not found by client order id
    by_id, by_client_id = ExchangeCall.objects.filter(method="DELETE").order_by("id")
    assert f"orderId={order['orderId']}" in by_id.path and "operatorId=1" in by_id.path
    assert by_client_id.client_order_id == client_order_id


@pytest.mark.parametrize(
    "changes, status, code, bitvavo_code",
    [
        ({"amount_quote": Decimal("2")}, None, "EXCHANGE_BELOW_MINIMUM", 217),
        ({"amount_quote": None, "amount": Decimal("0.00001")}, None, "EXCHANGE_BELOW_MINIMUM", 212),
        ({"amount_quote": Decimal("20000")}, None, "EXCHANGE_INSUFFICIENT_BALANCE", 216),
        ({}, "halted", "EXCHANGE_MARKET_NOT_TRADING", 423),
        ({}, "cancelOnly", "EXCHANGE_MARKET_NOT_TRADING", 424),
        ({}, "auction", "EXCHANGE_MARKET_NOT_TRADING", 425),
        ({"amount_quote": Decimal("20.123")}, None, "EXCHANGE_TOO_MANY_DECIMALS", 429),
        ({"market": "NOPE-EUR"}, None, "EXCHANGE_INVALID_PARAMETER", 205),
    ],
)
def test_definite_refusals_are_rejected(
    trade_client, exchange, changes, status, code, bitvavo_code
):
    if status:
        exchange.control.set_market_status("BTC-EUR", status)
    with pytest.raises(ExchangeRejected) as caught:
        place(trade_client, **changes)
    assert (caught.value.kind, caught.value.retryable) == ("rejected", False)
    assert (caught.value.code, caught.value.bitvavo_error_code) == (code, bitvavo_code)
    assert exchange.orders() == []
    assert ExchangeCall.objects.get().error_kind == "rejected"


def test_a_view_key_cannot_place_an_order(exchange, monkeypatch):
    monkeypatch.setenv("BITVAVO_TRADE_KEY", exchange.server.readonly_pair[0])
    monkeypatch.setenv("BITVAVO_TRADE_SECRET", exchange.server.readonly_pair[1])
    with pytest.raises(ExchangeRejected) as caught:
        place(TradeClient())
    assert (caught.value.code, caught.value.bitvavo_error_code) == (
        "EXCHANGE_PERMISSION_DENIED",
        310,
    )
    assert exchange.orders() == []


def test_a_wrong_secret_is_a_bad_signature(exchange, monkeypatch):
    monkeypatch.setenv("BITVAVO_TRADE_SECRET", "not-the-secret")
    with pytest.raises(ExchangeRejected) as caught:
        place(TradeClient())
    assert (caught.value.code, caught.value.bitvavo_error_code) == ("EXCHANGE_BAD_SIGNATURE", 309)
