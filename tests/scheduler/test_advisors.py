"""Advisor output is untrusted: every answer becomes a proposal, "no trade", or a rejection
with a reason. Nothing else, and never a crash."""

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.advisors import NO_TRADE, Advice, OfflineAdvisor, advice_parse
from scheduler.errors import AdvisorOutputInvalid

MARKETS = ["BTC-EUR", "ETH-EUR"]
VALID = {
    "decision": "propose",
    "market": "BTC-EUR",
    "side": "buy",
    "amount_eur": "25.00",
    "confidence": 75,
    "rationale": "Rising.",
}
LIMITS = {"min_order_eur": Decimal("10.00"), "max_order_eur": Decimal("100.00")}


def parse(data):
    return advice_parse(text=data if isinstance(data, str) else json.dumps(data), markets=MARKETS)


def test_a_valid_answer_becomes_advice_with_a_decimal_amount():
    assert parse(VALID) == Advice("BTC-EUR", "buy", Decimal("25.00"), 75, "Rising.")
    assert parse({**VALID, "amount_eur": 12.5}).amount_eur == Decimal("12.5")  # never a float


def test_no_trade_is_none():
    assert parse({"decision": NO_TRADE, "market": None, "rationale": "flat"}) is None


@pytest.mark.parametrize(
    ("output", "field"),
    [
        ('{"decision": "propose", "market": "BTC-EUR",', "output"),  # malformed JSON
        ("", "output"),
        ("refusal: I cannot help with that", "output"),
        ("[1, 2, 3]", "output"),
        ('"propose"', "output"),
        ({**VALID, "decision": "maybe"}, "decision"),
        ({k: v for k, v in VALID.items() if k != "decision"}, "decision"),
        ({**VALID, "confidence": 30}, "confidence"),
        ({**VALID, "confidence": "75"}, "confidence"),
        ({**VALID, "confidence": True}, "confidence"),
        ({**VALID, "market": "DOGE-EUR"}, "market"),  # not one of the scanned markets
        ({**VALID, "market": 42}, "market"),
        ({**VALID, "market": "BTC-EUR; DROP TABLE"}, "market"),
        ({**VALID, "side": "short"}, "side"),
        ({**VALID, "side": None}, "side"),
        ({**VALID, "amount_eur": "-25"}, "amount_eur"),
        ({**VALID, "amount_eur": 0}, "amount_eur"),
        ({**VALID, "amount_eur": "lots"}, "amount_eur"),
        ({**VALID, "amount_eur": "1e400"}, "amount_eur"),
        ({**VALID, "amount_eur": "25.001"}, "amount_eur"),
        ({**VALID, "amount_eur": None}, "amount_eur"),
        ({**VALID, "amount_eur": True}, "amount_eur"),
        (
            '{"decision": "propose", "market": "BTC-EUR", "side": "buy", "amount_eur": NaN, '
            '"confidence": 75, "rationale": ""}',
            "amount_eur",
        ),
        ({**VALID, "rationale": "x" * 100_000}, "rationale"),  # huge rationale
        ({**VALID, "rationale": ["a list"]}, "rationale"),
        ({**VALID, "rationale": "up\ud800"}, "rationale"),  # no UTF-8 form: not storable
        ({**VALID, "rationale": "up\x00"}, "rationale"),
        ({**VALID, "amount_eur": "10_000"}, "amount_eur"),
        ({**VALID, "amount_eur": "\u0661\u0660"}, "amount_eur"),
        ({**VALID, "confidence": 75.0}, "confidence"),
        ("[" * 100_000 + "]" * 100_000, "output"),  # nested past the parser's recursion limit
    ],
)
def test_invalid_answers_are_rejected_with_the_field_at_fault(output, field):
    with pytest.raises(AdvisorOutputInvalid) as rejected:
        parse(output)
    assert rejected.value.code == "ADVISOR_OUTPUT_INVALID"
    assert rejected.value.extra["field"] == field
    assert rejected.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
answers = st.fixed_dictionaries(
    {},
    optional={
        "decision": st.sampled_from(["propose", "no_trade", "PROPOSE", ""]) | json_values,
        "market": st.sampled_from(MARKETS + ["XRP-EUR", "btc-eur"]) | json_values,
        "side": st.sampled_from(["buy", "sell", "BUY"]) | json_values,
        "amount_eur": st.decimals(allow_nan=False, places=3).map(str) | json_values,
        "confidence": st.sampled_from([0, 25, 30, 50, 75, 100, 101]) | json_values,
        "rationale": st.text(max_size=50) | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(output=answers | json_values | st.text(max_size=80))
def test_any_answer_is_advice_no_trade_or_a_rejection(output):
    text = output if isinstance(output, str) else json.dumps(output)
    try:
        advice = advice_parse(text=text, markets=MARKETS)
    except AdvisorOutputInvalid as rejected:
        assert rejected.extra["field"]
        return
    if advice is not None:
        assert advice.market in MARKETS and advice.side in ("buy", "sell")
        assert advice.confidence in (0, 25, 50, 75, 100)
        assert isinstance(advice.amount_eur, Decimal) and advice.amount_eur > 0


def snapshot(**markets):
    return {
        market: {"change_24h": Decimal(move), "volatility_1h": Decimal(noise)}
        for market, (move, noise) in markets.items()
    }


def offline(data):
    advisor = OfflineAdvisor()
    return advice_parse(text=advisor.advise(snapshot=data, limits=LIMITS).text, markets=list(data))


def test_offline_rules_buy_the_steadiest_rise_at_the_minimum_amount():
    advice = offline(snapshot(**{"BTC-EUR": ("0.03", "0.004"), "ETH-EUR": ("0.05", "0.02")}))
    # BTC: 3% over 0.4% noise scores 7.5; ETH: 5% over 2% scores 2.5.
    assert (advice.market, advice.side, advice.amount_eur, advice.confidence) == (
        "BTC-EUR",
        "buy",
        Decimal("10.00"),
        50,
    )
    assert "+3.00%" in advice.rationale


def test_offline_rules_sell_a_steady_fall():
    advice = offline(snapshot(**{"ETH-EUR": ("-0.04", "0.003")}))
    assert (advice.market, advice.side, advice.confidence) == ("ETH-EUR", "sell", 75)


@pytest.mark.parametrize(
    "data",
    [
        {"BTC-EUR": ("0.005", "0.001")},  # too small a move
        {"BTC-EUR": ("0.20", "0.08")},  # too wild
        {},
    ],
)
def test_offline_rules_say_no_trade_without_a_clear_move(data):
    assert offline(snapshot(**data)) is None


def test_offline_rules_are_deterministic():
    data = snapshot(**{"BTC-EUR": ("0.02", "0.004"), "ETH-EUR": ("-0.02", "0.004")})
    texts = {OfflineAdvisor().advise(snapshot=data, limits=LIMITS).text for _ in range(3)}
    assert len(texts) == 1


def holding(sellable):
    return {
        "asset": "ETH",
        "quantity": "0",
        "value_eur": sellable,
        "open_sells_eur": "0",
        "sellable_eur": sellable,
    }


def test_offline_rules_do_not_sell_what_the_user_does_not_hold():
    falling = snapshot(**{"ETH-EUR": ("-0.04", "0.003")})
    limits = {**LIMITS, "allocation_left_eur": Decimal("0"), "holdings": {}}

    assert offline_with(falling, {**limits, "holdings": {"ETH-EUR": holding("9.99")}}) is None
    assert offline_with(falling, limits) is None  # nothing held at all
    advice = offline_with(falling, {**limits, "holdings": {"ETH-EUR": holding("10.00")}})
    assert (advice.market, advice.side, advice.amount_eur) == ("ETH-EUR", "sell", Decimal("10.00"))


def test_offline_rules_buy_only_within_the_allocation_left_and_take_the_next_market():
    data = snapshot(**{"BTC-EUR": ("0.03", "0.004"), "ETH-EUR": ("-0.02", "0.004")})
    held = {"ETH-EUR": holding("50.00")}

    # BTC's rise scores best, but there is no allocation left to buy it: ETH's fall is sold.
    advice = offline_with(data, {**LIMITS, "allocation_left_eur": "9.99", "holdings": held})
    assert (advice.market, advice.side) == ("ETH-EUR", "sell")
    advice = offline_with(data, {**LIMITS, "allocation_left_eur": "10.00", "holdings": held})
    assert (advice.market, advice.side) == ("BTC-EUR", "buy")


def offline_with(data, limits):
    text = OfflineAdvisor().advise(snapshot=data, limits=limits).text
    return advice_parse(text=text, markets=list(data))
