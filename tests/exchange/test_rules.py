"""Market rules: truncation never rounds up, prices land on the tick, minimums hold."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from exchange.rules import (
    MarketRules,
    decimal_places,
    format_decimal,
    order_violation,
    to_tick,
    truncate,
)

RULES = MarketRules(
    market="BTC-EUR",
    status="trading",
    base="BTC",
    quote="EUR",
    tick_size=Decimal("1"),
    quantity_decimals=8,
    notional_decimals=2,
    min_order_in_base_asset=Decimal("0.00006"),
    min_order_in_quote_asset=Decimal("5"),
    max_order_in_base_asset=Decimal("1000"),
    max_order_in_quote_asset=Decimal("1000000"),
)
amounts = st.decimals(min_value=Decimal("0.000000001"), max_value=Decimal("100000"), places=12)


@given(amounts, st.integers(min_value=0, max_value=10))
def test_truncation_never_rounds_up_and_respects_the_decimals(value, decimals):
    cut = truncate(value, decimals)
    assert cut <= value
    assert value - cut < Decimal(1).scaleb(-decimals)
    assert decimal_places(cut) <= decimals


@given(amounts, st.sampled_from([Decimal("0.01"), Decimal("1"), Decimal("0.00001")]))
def test_prices_land_on_the_tick_below(price, tick):
    on_tick = to_tick(price, tick)
    assert on_tick <= price < on_tick + tick
    assert (on_tick / tick) == (on_tick / tick).to_integral_value()


@given(amounts)
def test_formatting_is_plain_and_exact(value):
    text = format_decimal(value)
    assert "e" not in text.lower()
    assert Decimal(text) == value


def test_order_rules():
    assert order_violation(RULES, amount_quote=Decimal("25.00")) is None
    assert order_violation(RULES, amount_quote=Decimal("4.99")) == "EXCHANGE_BELOW_MINIMUM"
    assert order_violation(RULES, amount_quote=Decimal("5.001")) == "EXCHANGE_TOO_MANY_DECIMALS"
    assert order_violation(RULES, amount=Decimal("0.00005")) == "EXCHANGE_BELOW_MINIMUM"
    assert order_violation(RULES, amount=Decimal("1"), amount_quote=Decimal("5")) == (
        "EXCHANGE_INVALID_PARAMETER"
    )
    halted = MarketRules(**{**RULES.__dict__, "status": "halted"})
    assert order_violation(halted, amount_quote=Decimal("25")) == "EXCHANGE_MARKET_NOT_TRADING"
