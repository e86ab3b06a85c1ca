"""Bitvavo's own Python SDK works against our simulator: ticker, balance, market order."""

import uuid

import pytest
from python_bitvavo_api.bitvavo import Bitvavo


@pytest.fixture
def sdk(simulator):
    def make(pair):
        return Bitvavo(
            {"APIKEY": pair[0], "APISECRET": pair[1], "RESTURL": simulator.api_url, "timeout": 10}
        )

    simulator.control.reset()
    yield make
    simulator.control.reset()


def test_the_sdk_reads_a_ticker_and_a_balance(sdk, simulator):
    view = sdk(simulator.readonly_pair)
    assert float(view.tickerPrice({"market": "BTC-EUR"})["price"]) > 0
    balances = {b["symbol"]: b["available"] for b in view.balance({})}
    assert balances["EUR"] == "10000"


def test_the_sdk_places_a_market_order(sdk, simulator):
    trade = sdk(simulator.trade_pair)
    client_order_id = str(uuid.uuid4())
    order = trade.placeOrder(
        "ETH-EUR",
        "buy",
        "market",
        {"amountQuote": "30", "operatorId": 42, "clientOrderId": client_order_id},
    )
    assert order.get("status") == "filled", order
    assert [o["clientOrderId"] for o in simulator.control.orders()] == [client_order_id]
    fetched = trade.getOrder("ETH-EUR", order["orderId"])
    assert fetched["orderId"] == order["orderId"]


def test_the_sdk_gets_the_documented_errors(sdk, simulator):
    view = sdk(simulator.readonly_pair)
    refused = view.placeOrder("BTC-EUR", "buy", "market", {"amountQuote": "30", "operatorId": 1})
    assert refused["errorCode"] == 310
    missing = sdk(simulator.trade_pair).placeOrder(
        "BTC-EUR", "buy", "market", {"amountQuote": "30"}
    )
    assert missing == {"errorCode": 203, "error": "operatorId parameter is required."}
