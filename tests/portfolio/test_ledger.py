"""The average-cost computation on hand-computed cases (pure: no database)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from trading.ledger import (
    FEE_NOT_CONVERTED,
    OVERSOLD,
    Fill,
    fee_in_eur,
    positions_from_fills,
    realized_between,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fill(minutes, side, quantity, price, fee, *, asset="BTC", fee_currency="EUR", fee_eur=None):
    quantity, price, fee = D(quantity), D(price), D(fee)
    if fee_eur is None:
        fee_eur = fee_in_eur(
            fee=fee, fee_currency=fee_currency, asset=asset, price=price, rate=None
        )
    return Fill(
        executed_at=T0 + timedelta(minutes=minutes),
        market=f"{asset}-EUR",
        asset=asset,
        side=side,
        quantity=quantity,
        price=price,
        amount_eur=quantity * price,
        fee=fee,
        fee_currency=fee_currency,
        fee_eur=fee_eur,
    )


BTC_FILLS = [
    fill(0, "buy", "0.01", "50000", "1.25"),  # 500 + 1.25
    fill(60, "buy", "0.02", "40000", "2.00"),  # 800 + 2.00: 0.03 for 1303.25
    fill(120, "sell", "0.015", "60000", "2.25"),  # 900 - 2.25 - 1303.25 / 2
]


def test_two_buys_and_a_sell_by_average_cost():
    btc = positions_from_fills(BTC_FILLS)["BTC"]

    assert btc.quantity == D("0.015")
    assert btc.cost_eur == D("651.625")  # half of 1303.25 is left
    assert btc.realized_pnl_eur == D("246.125")  # 897.75 - 651.625
    assert btc.fees_eur == D("5.50")
    assert btc.average_cost_eur.quantize(D("1e-8")) == D("43441.66666667")  # 1303.25 / 0.03
    assert btc.fills == 3 and btc.flags == set()


def test_selling_everything_leaves_no_cost_and_no_average():
    fills = [*BTC_FILLS, fill(180, "sell", "0.015", "30000", "1.125")]
    btc = positions_from_fills(fills)["BTC"]

    assert (btc.quantity, btc.cost_eur, btc.average_cost_eur) == (0, 0, None)
    # 246.125 + (450 - 1.125 - 651.625)
    assert btc.realized_pnl_eur == D("43.375")


def test_a_fee_in_the_bought_asset_is_paid_in_coins_and_valued_at_the_fill_price():
    fills = [
        fill(0, "buy", "1", "2000", "0.001", asset="ETH", fee_currency="ETH"),
        fill(60, "sell", "0.5", "2500", "3.125", asset="ETH"),
    ]
    eth = positions_from_fills(fills)["ETH"]

    # 1 ETH bought for 2000 EUR, 0.001 ETH of it kept as the fee: 0.999 held for 2000.
    assert fills[0].fee_eur == D("2.000")
    assert eth.fees_eur == D("5.125")
    # Sold half a coin of 0.999 costing 2000: 1001.001001001... of cost goes.
    assert eth.quantity == D("0.499")
    assert eth.realized_pnl_eur.quantize(D("1e-12")) == D("245.873998998999")  # 1246.875 - 1001.001
    assert eth.cost_eur.quantize(D("1e-12")) == D("998.998998998999")


def test_a_fee_in_the_sold_asset_is_given_up_with_the_quantity():
    fills = [
        fill(0, "buy", "2", "100", "0.5", asset="SOL"),
        fill(60, "sell", "1", "150", "0.01", asset="SOL", fee_currency="SOL"),
    ]
    sol = positions_from_fills(fills)["SOL"]

    # 1.01 SOL leave the account for 150 EUR; they cost 1.01 x 100.25.
    assert sol.quantity == D("0.99")
    assert sol.realized_pnl_eur == D("150") - D("1.01") * D("100.25")
    assert sol.fees_eur == D("0.5") + D("1.5")


def test_a_sell_beyond_the_holding_is_matched_against_what_was_held_and_flagged():
    fills = [
        fill(0, "buy", "1", "100", "0.25", asset="SOL"),
        fill(60, "sell", "1.5", "120", "0.45", asset="SOL"),
        fill(120, "buy", "2", "110", "0.55", asset="SOL"),
    ]
    sol = positions_from_fills(fills)["SOL"]

    assert OVERSOLD in sol.flags
    assert sol.unmatched_quantity == D("0.5")
    assert sol.unmatched_proceeds_eur == D("59.85")  # a third of 179.55: no known cost
    assert sol.realized_pnl_eur == D("19.45")  # 119.70 - 100.25
    # The holding went to zero, never below; the next buy starts afresh.
    assert sol.quantity == D("2") and sol.cost_eur == D("220.55")
    assert sol.average_cost_eur == D("110.275")


def test_a_fee_in_another_currency_uses_its_rate_or_is_flagged():
    assert fee_in_eur(
        fee=D("0.01"), fee_currency="BNB", asset="BTC", price=D("50000"), rate=D("300")
    ) == D("3.00")
    unconverted = fill(0, "buy", "0.01", "50000", "0.01", fee_currency="BNB")
    assert unconverted.fee_eur is None

    btc = positions_from_fills([unconverted])["BTC"]

    assert FEE_NOT_CONVERTED in btc.flags
    assert btc.cost_eur == D("500") and btc.fees_eur == 0


def test_realized_between_counts_the_sells_of_the_period_at_their_average_cost():
    day = T0.replace(hour=0)
    assert realized_between(BTC_FILLS, start=day, end=day + timedelta(days=1)) == D("246.125")
    assert realized_between(BTC_FILLS, start=T0, end=T0 + timedelta(minutes=120)) == 0
