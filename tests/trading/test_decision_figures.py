"""The decision screen's arithmetic and how its money reads: pure functions, no database."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.money import eur, eur_text, percent_text, price_text, time_text
from tests.trading.test_validators import NOW, make_context
from trading.decision import (
    eur_at_risk,
    expected_fill,
    price_drift,
    risk_to_stop,
    rule_label,
)
from trading.validators import BalanceFacts, RecentTrade, check_balance, check_cooldown

FEE = Decimal("0.0025")


@pytest.mark.parametrize(
    "side, at, now, expected",
    [
        ("buy", "100", "101", Decimal("0.01")),  # a buy whose price rose: against it
        ("buy", "100", "99", Decimal("-0.01")),  # cheaper now: its way
        ("sell", "100", "99", Decimal("0.01")),  # a sell whose price fell: against it
        ("sell", "100", "101", Decimal("-0.01")),
        ("buy", "100", "100", Decimal("0")),
    ],
)
def test_drift_is_positive_against_the_proposal(side, at, now, expected):
    assert price_drift(side=side, at_proposal=Decimal(at), now=Decimal(now)) == expected


@pytest.mark.parametrize("at, now", [(None, "100"), ("100", None), ("0", "100")])
def test_drift_is_unknown_without_both_prices(at, now):
    at = None if at is None else Decimal(at)
    now = None if now is None else Decimal(now)
    assert price_drift(side="buy", at_proposal=at, now=now) is None


def test_a_buys_fee_comes_out_of_its_amount():
    fill = expected_fill(side="buy", amount_eur=Decimal("25"), price=Decimal("50000"), fee_rate=FEE)
    assert fill.fee_eur == Decimal("0.0625")
    assert fill.quantity == Decimal("0.00049875")  # (25 - 0.0625) / 50000


def test_a_sell_gives_up_the_whole_amount_in_coins_and_pays_the_fee_from_the_proceeds():
    fill = expected_fill(
        side="sell", amount_eur=Decimal("25"), price=Decimal("50000"), fee_rate=FEE
    )
    assert (fill.quantity, fill.fee_eur) == (Decimal("0.0005"), Decimal("0.0625"))


def test_the_quantity_is_cut_to_the_markets_decimals_never_rounded_up():
    fill = expected_fill(
        side="sell", amount_eur=Decimal("10"), price=Decimal("3"), fee_rate=FEE, decimals=2
    )
    assert fill.quantity == Decimal("3.33")


def test_no_price_no_expected_fill():
    assert expected_fill(side="buy", amount_eur=Decimal("25"), price=None, fee_rate=FEE) is None


def test_the_whole_order_is_at_risk_and_the_stop_loss_figure_adds_both_fees():
    assert eur_at_risk(amount_eur=Decimal("25.00")) == Decimal("25.00")
    fill = expected_fill(
        side="sell", amount_eur=Decimal("25"), price=Decimal("50000"), fee_rate=FEE
    )
    # 0.0005 × (51000 − 50000) + 0.0625 in + 0.0005 × 51000 × 0.0025 out
    assert risk_to_stop(fill=fill, stop_loss=Decimal("51000"), fee_rate=FEE) == Decimal(
        "0.5625"
    ) + Decimal("0.06375")
    assert risk_to_stop(fill=fill, stop_loss=None, fee_rate=FEE) is None


@pytest.mark.parametrize(
    "value, text",
    [
        (Decimal("9.876543210000"), "9.88 EUR"),
        (Decimal("10"), "10.00 EUR"),
        (Decimal("0.005"), "0.01 EUR"),  # half up
        (Decimal("-0.001"), "0.00 EUR"),  # never -0.00
        (None, "-"),
    ],
)
def test_money_reads_with_two_decimals(value, text):
    assert eur(value) == text


def test_prices_percentages_and_moments_read_plainly():
    assert price_text(Decimal("65000.000000000000")) == "65000.00"
    assert price_text(Decimal("0.000012345678")) == "0.00001235"
    assert eur_text(None) is None
    assert percent_text(Decimal("0.012345")) == "+1.23 %"
    assert percent_text(Decimal("-0.00001")) == "0.00 %"
    assert percent_text(Decimal("0.5"), signed=False) == "50.00 %"
    assert time_text(datetime(2026, 12, 2, 14, 5, 59, 123, tzinfo=UTC)) == "2026-12-02 14:05 UTC"


def test_the_balance_verdict_names_the_shared_account_in_euros_with_cents():
    ctx = make_context()
    ctx = replace(ctx, balance=BalanceFacts(available_eur=Decimal("9.876543210000"), as_of=NOW))
    result = check_balance(ctx)
    assert result.code == "INSUFFICIENT_BALANCE"
    assert result.detail == ("9.88 EUR available on the shared exchange account, 25.00 EUR needed.")


def test_the_cooldown_verdict_says_when_it_ends():
    ctx = replace(
        make_context(),
        recent_trades=(RecentTrade(market="BTC-EUR", side="buy", at=NOW - timedelta(minutes=10)),),
    )
    result = check_cooldown(ctx)
    ends = time_text(NOW + timedelta(minutes=50))
    assert result.code == "COOLDOWN_ACTIVE" and f"runs until {ends}" in result.detail


def test_every_rule_has_a_plain_name_also_one_added_later():
    assert rule_label("balance") == "Balance (shared account)"
    assert rule_label("max_position_size") == "Max position size"
