"""Final order states, partial and empty fills, fills that come later: the simulator over
real HTTP, the trade client, the fill parser and the bounded wait for a final order."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from exchange.fills import (
    FINAL_STATUSES,
    order_filled,
    order_fills,
    order_is_final,
    order_reported_filled,
)
from exchange.models import ExchangeCall
from exchange.orders import order_wait_final

pytestmark = pytest.mark.django_db

EUR_FEE = Decimal("0.0025")


def place(client, side="buy", amount_quote="20", **changes):
    fields = {
        "market": "BTC-EUR",
        "side": side,
        "client_order_id": uuid.uuid4(),
        "amount_quote": Decimal(amount_quote),
    }
    return client.place_market_order(**{**fields, **changes})


def balances(exchange) -> dict[str, Decimal]:
    state = exchange.control.state()["balances"]
    return {asset: Decimal(row["available"]) for asset, row in state.items()}


def lookups(order) -> int:
    return ExchangeCall.objects.filter(method="GET", path__contains=order["orderId"]).count()


# --- the parser, on answers as Bitvavo writes them ---------------------------------------------


def answer(status, *fills, market="BTC-EUR"):
    return {"orderId": "o1", "market": market, "status": status, "fills": list(fills)}


def fill(fill_id="f1", amount="0.001", price="60000", fee="0.15", currency="EUR", **more):
    raw = {"id": fill_id, "timestamp": 1_767_225_600_000, "amount": amount, "price": price}
    raw |= {"taker": True, "settled": True, "fee": fee, "feeCurrency": currency, **more}
    return raw


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_every_final_status_with_settled_fills_is_final(status):
    assert order_is_final(answer(status, fill()))
    assert order_is_final(answer(status))


@pytest.mark.parametrize("status", ["new", "awaitingTrigger", "partiallyFilled", "", "weird"])
def test_an_active_or_unknown_status_is_not_final(status):
    assert not order_is_final(answer(status, fill()))


def test_a_filled_order_with_an_unsettled_fill_is_not_final():
    unsettled = {k: v for k, v in fill().items() if k not in ("fee", "feeCurrency")}
    assert not order_is_final(answer("filled", fill("a"), unsettled | {"settled": False}))
    assert not order_is_final(answer("filled", fill(settled=False)))
    assert not order_is_final(None) and not order_is_final({})
    (parsed,) = order_fills(answer("filled", unsettled | {"settled": False}))
    assert (parsed.fee, parsed.fee_eur, parsed.settled) == (None, None, False)


def test_fees_are_converted_to_eur_from_the_quote_or_the_base_asset_only():
    order = answer(
        "filled",
        fill("eur", fee="0.15", currency="EUR"),
        fill("btc", amount="0.002", price="61000", fee="0.000005", currency="BTC"),
        fill("other", fee="3", currency="VAVO"),
    )
    eur, btc, other = order_fills(order)
    assert (eur.fee_eur, eur.fee_currency, eur.fee_unconverted) == (Decimal("0.15"), "EUR", False)
    assert btc.fee_eur == Decimal("0.000005") * Decimal("61000") == Decimal("0.305")
    assert btc.amount_quote == Decimal("122") and btc.fill_id == "btc"
    assert (other.fee, other.fee_eur, other.fee_unconverted) == (Decimal("3"), None, True)
    assert eur.executed_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert order_filled(order).fee_eur is None, "one fee unknown in EUR: the total is unknown"


def test_the_totals_and_the_average_price_come_from_the_fills():
    order = answer(
        "canceledMarketProtection",
        fill("a", amount="0.001", price="60000", fee="0.15"),
        fill("b", amount="0.003", price="60100", fee="0.45075"),
    )
    filled = order_filled(order)
    assert filled.amount == Decimal("0.004")
    assert filled.amount_quote == Decimal("60") + Decimal("180.3")
    assert filled.fee_eur == Decimal("0.60075")
    assert filled.average_price == Decimal("240.3") / Decimal("0.004") == Decimal("60075")
    assert order_filled(answer("expired")) == (0, 0, 0, None)


# --- the simulator, through the trade client ---------------------------------------------------


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_market_protection_cancels_an_order_half_filled(trade_client, exchange, side):
    exchange.control.set_fill_mode("canceledMarketProtection", fraction="0.5", fills=2)
    before = balances(exchange)
    order = place(trade_client, side=side)

    assert order["status"] == "canceledMarketProtection" and order_is_final(order)
    assert order["amountQuoteRemaining"] == Decimal("10.00"), "10.00 of 20.00 EUR not traded"
    first, second = order_fills(order)
    tick = Decimal("1")
    assert second.price == first.price + (tick if side == "buy" else -tick), "one tick worse"
    filled = order_filled(order)
    assert (filled.amount, filled.amount_quote) == order_reported_filled(order)
    assert filled.fee_eur == order["feePaid"] == Decimal("0.025"), "0.25 % of 2 × 5.00 EUR"
    assert filled.average_price == filled.amount_quote / filled.amount
    assert min(first.price, second.price) < filled.average_price < max(first.price, second.price)
    after = balances(exchange)
    if side == "buy":
        # The 10.00 EUR that traded bought the asset and paid the fee; the rest stayed.
        assert before["EUR"] - after["EUR"] == Decimal("10.00")
        assert Decimal("9.99") < filled.amount_quote + filled.fee_eur <= Decimal("10.00")
        assert after["BTC"] - before["BTC"] == filled.amount
    else:
        assert before["BTC"] - after["BTC"] == filled.amount
        assert after["EUR"] - before["EUR"] == filled.amount_quote - filled.fee_eur
        assert Decimal("9.99") < filled.amount_quote <= Decimal("10.00")


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_without_liquidity_expires_with_nothing_filled(trade_client, exchange, side):
    exchange.control.set_fill_mode("expired")
    before = balances(exchange)
    order = place(trade_client, side=side)

    assert order["status"] == "expired" and order_is_final(order)
    assert order["fills"] == [] and order_filled(order) == (0, 0, 0, None)
    assert order_reported_filled(order) == (0, 0)
    assert order["amountQuoteRemaining"] == Decimal("20")
    assert balances(exchange) == before
    later = trade_client.get_order(market="BTC-EUR", order_id=order["orderId"])
    assert later["status"] == "expired", "an expired order stays expired"


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_answered_new_is_filled_at_the_next_lookup(trade_client, exchange, side):
    exchange.control.set_fill_mode(answer="new")
    order = place(trade_client, side=side)
    assert order["status"] == "new" and order["fills"] == [] and not order_is_final(order)
    assert order_filled(order) == (0, 0, 0, None)

    final = order_wait_final(trade_client, order, seconds=5)

    assert final["status"] == "filled" and order_is_final(final)
    assert lookups(order) == 1
    filled = order_filled(final)
    assert (filled.amount, filled.amount_quote) == order_reported_filled(final) != (0, 0)
    assert filled.fee_eur == final["feePaid"] == Decimal("20") * EUR_FEE
    (only,) = order_fills(final)
    assert filled.average_price == only.price
    assert final["updated"] >= final["created"]
    # GET /orders and GET /trades show the same final order and its fill.
    (listed,) = trade_client.list_orders(market="BTC-EUR", start_ms=0, end_ms=final["updated"])
    assert listed == final
    (trade,) = trade_client.list_trades(market="BTC-EUR", start_ms=0, end_ms=final["updated"])
    assert (trade["id"], trade["fee"]) == (only.fill_id, only.fee)
    assert trade["orderId"] == order["orderId"]


def test_an_unsettled_fill_gets_its_fee_later(trade_client, exchange):
    exchange.control.set_fill_mode(answer="unsettled", settle_after_lookups=2)
    order = place(trade_client)
    assert order["status"] == "filled", "filled, but its fill is not settled yet"
    assert not order_is_final(order)
    (early,) = order["fills"]
    assert early["settled"] is False and "fee" not in early and "feeCurrency" not in early
    assert order_filled(order).fee_eur is None

    still = trade_client.get_order(market="BTC-EUR", order_id=order["orderId"])
    assert not order_is_final(still), "settles only at the second lookup"
    final = order_wait_final(trade_client, still, seconds=5)

    assert order_is_final(final)
    (settled,) = order_fills(final)
    assert settled.settled and settled.fee_currency == "EUR"
    assert settled.fee_eur == Decimal("0.05") == final["feePaid"]
    assert (settled.fill_id, settled.amount) == (early["id"], early["amount"])


def test_a_partially_filled_answer_shows_some_fills_unsettled(trade_client, exchange):
    exchange.control.set_fill_mode(answer="partiallyFilled", fills=2, settle_after_lookups=2)
    order = place(trade_client, client_order_id=(client_order_id := uuid.uuid4()))
    assert order["status"] == "partiallyFilled" and not order_is_final(order)
    (early,) = order["fills"]
    assert early["settled"] is False and "fee" not in early
    assert order["filledAmount"] == early["amount"]

    # An open order is found by its client order id, as on Bitvavo; a closed one may not be.
    found = trade_client.get_order(market="BTC-EUR", client_order_id=client_order_id)
    assert found["status"] == "partiallyFilled" and found["orderId"] == order["orderId"]
    assert trade_client.get_order(market="BTC-EUR", client_order_id=client_order_id) is None
    found = trade_client.get_order(market="BTC-EUR", order_id=order["orderId"])
    assert found["status"] == "filled" and order_is_final(found)
    assert [f["id"] for f in found["fills"]][0] == early["id"] and len(found["fills"]) == 2
    assert sum(f["amount"] for f in found["fills"]) == found["filledAmount"]


def test_an_order_waiting_for_its_fills_is_an_open_order(trade_client, exchange):
    exchange.control.set_fill_mode(answer="new", settle_after_lookups=1)
    order = place(trade_client)

    def open_orders():
        rows = trade_client._transport.request(
            "GET", "/ordersOpen", params={"market": "BTC-EUR"}, weight=5
        )
        return [(row["orderId"], row["status"]) for row in rows]

    assert open_orders() == [(order["orderId"], "new")], "listing open orders is no lookup"
    assert order_is_final(trade_client.get_order(market="BTC-EUR", order_id=order["orderId"]))
    assert open_orders() == []


def test_an_order_fills_a_moment_later_without_a_lookup_counting(trade_client, exchange):
    exchange.control.set_fill_mode(answer="new", settle_after_seconds=0.5)
    order = place(trade_client)
    final = order_wait_final(trade_client, order, seconds=10, interval=0.1)
    assert order_is_final(final) and final["status"] == "filled"
    assert lookups(order) >= 2, "still new at the first lookups, filled once its time came"
    assert final["updated"] >= order["created"] + 500


def test_the_wait_is_bounded_and_returns_the_last_answer(trade_client, exchange):
    exchange.control.set_fill_mode(answer="new", settle_after_lookups=1000)
    order = place(trade_client)

    last = order_wait_final(trade_client, order, seconds=0.5, interval=0.2)

    assert last["status"] == "new" and not order_is_final(last)
    assert 1 <= lookups(order) <= 3, "0.5 s at one lookup per 0.2 s"
    assert order_wait_final(trade_client, order, seconds=0) == order
    assert lookups(order) <= 3, "no time left: no lookup"


def test_a_final_answer_is_not_looked_up_again(trade_client, exchange):
    order = place(trade_client)
    assert order_wait_final(trade_client, order, seconds=5) is order
    assert lookups(order) == 0


def test_a_failing_lookup_ends_the_wait_with_the_last_answer(trade_client, exchange):
    exchange.control.set_fill_mode(answer="new")
    order = place(trade_client)
    exchange.control.inject("ban_429", method="GET", path="/order", seconds=60)
    assert order_wait_final(trade_client, order, seconds=5) == order


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_fee_in_the_base_asset_is_converted_at_the_fill_price(trade_client, exchange, side):
    exchange.control.set_fill_mode(fee_currency="base")
    before = balances(exchange)
    order = place(trade_client, side=side)
    (only,) = order_fills(order)
    assert only.fee_currency == "BTC" and only.fee == order["feePaid"] > 0
    assert only.fee_eur == only.fee * only.price
    after = balances(exchange)
    if side == "buy":
        assert after["BTC"] - before["BTC"] == only.amount - only.fee, "paid out of the asset"
        assert before["EUR"] - after["EUR"] == Decimal("20")
    else:
        assert before["BTC"] - after["BTC"] == only.amount + only.fee
        assert after["EUR"] - before["EUR"] == only.amount_quote


def test_a_fee_in_another_currency_is_not_guessed(trade_client, exchange):
    exchange.control.set_fill_mode(fee_currency="VAVO")
    order = place(trade_client)
    assert order_is_final(order)
    (only,) = order_fills(order)
    assert (only.fee_currency, only.fee_eur, only.fee_unconverted) == ("VAVO", None, True)
    assert order_filled(order).fee_eur is None


def test_fill_modes_apply_to_the_next_orders_only(trade_client, exchange):
    exchange.control.set_fill_mode("expired", times=2)
    assert exchange.control.state()["fill_modes"][0]["times"] == 2
    statuses = [place(trade_client)["status"] for _ in range(3)]
    assert statuses == ["expired", "expired", "filled"]
    exchange.control.set_fill_mode("expired")
    exchange.control.reset_fill_modes()
    assert place(trade_client)["status"] == "filled"


@pytest.mark.parametrize(
    "changes",
    [{"status": "open"}, {"answer": "later"}, {"fraction": "1"}, {"fills": 0}, {"color": "red"}],
)
def test_a_bad_fill_mode_is_refused(exchange, changes):
    body = {"status": "filled", **changes}
    response = requests.post(f"{exchange.server.url}/_sim/fill-mode", json=body, timeout=5)
    assert response.status_code == 400 and response.json()["errorCode"] == 205
    assert exchange.control.state()["fill_modes"] == []
