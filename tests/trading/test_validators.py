"""Each preflight rule: passing and failing cases, and the edges (cooldown end, cap - 1)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading.validators import (
    BalanceFacts,
    HoldingFacts,
    MarketFacts,
    PolicyFacts,
    PreflightContext,
    ProposalFacts,
    RecentTrade,
    check_allocation,
    check_allowlist,
    check_anti_flip,
    check_balance,
    check_confidence,
    check_cooldown,
    check_daily_cap,
    check_holding,
    check_hourly_cap,
    check_kill_switch,
    check_market_status,
    check_order_size,
    check_proposal_state,
    preflight_run,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def make_context(**changes) -> PreflightContext:
    proposal = ProposalFacts(
        status="APPROVED",
        market="BTC-EUR",
        side="buy",
        amount_eur=Decimal("25.00"),
        confidence=75,
        expires_at=NOW + timedelta(minutes=10),
    )
    policy = PolicyFacts(
        trading_enabled=True,
        allowlist=("BTC-EUR", "ETH-EUR"),
        min_order_eur=Decimal("10"),
        max_order_eur=Decimal("100"),
        min_confidence=50,
        cooldown_minutes=60,
        anti_flip_minutes=240,
        max_daily_trades=5,
        max_trades_per_hour=2,
        allocation_eur=Decimal("500"),
    )
    context = PreflightContext(
        proposal=proposal,
        policy=policy,
        emergency_stop_active=False,
        recent_trades=(),
        market=MarketFacts(status="trading", min_order_in_quote=Decimal("5")),
        balance=BalanceFacts(available_eur=Decimal("1000"), as_of=NOW),
        now=NOW,
        # 0.001 BTC at 50000 EUR: 50 EUR the user may sell; 100 EUR invested of 500.
        holding=HoldingFacts(
            quantity=Decimal("0.001"),
            open_sells_eur=Decimal("0"),
            cost_basis_eur=Decimal("100"),
            open_buys_eur=Decimal("0"),
            price=Decimal("50000"),
        ),
    )
    # A dict for `proposal`, `policy` or `holding` changes some of its fields; anything else
    # replaces it.
    for name in ("proposal", "policy", "holding"):
        if isinstance(changes.get(name), dict):
            changes[name] = replace(getattr(context, name), **changes[name])
    return replace(context, **changes)


def trade(minutes_ago, *, market="BTC-EUR", side="buy"):
    return RecentTrade(market=market, side=side, at=NOW - timedelta(minutes=minutes_ago))


def test_a_clean_context_passes_every_check():
    result = preflight_run(make_context())
    assert result.passed
    assert result.failed_codes == []
    assert len(result.checks) == 14


def test_every_check_runs_even_after_a_failure():
    result = preflight_run(
        make_context(emergency_stop_active=True, proposal={"confidence": 25, "market": "XRP-EUR"})
    )
    assert not result.passed
    assert result.failed_codes == ["KILL_SWITCH", "MARKET_NOT_ALLOWED", "CONFIDENCE_TOO_LOW"]
    assert len(result.as_dict()["checks"]) == 14


@pytest.mark.parametrize(
    "changes, detail",
    [
        ({"emergency_stop_active": True}, "emergency stop"),
        ({"emergency_stop_active": None}, "could not be read"),
        ({"policy": {"trading_enabled": False}}, "disabled"),
    ],
)
def test_the_kill_switch_blocks(changes, detail):
    result = check_kill_switch(make_context(**changes))
    assert (result.passed, result.code) == (False, "KILL_SWITCH")
    assert detail in result.detail


def test_the_kill_switch_fails_closed_without_a_policy():
    assert check_kill_switch(make_context(policy=None)).code == "KILL_SWITCH"


@pytest.mark.parametrize("status", ["PENDING", "REJECTED", "EXPIRED", "EXECUTED", "FAILED"])
def test_only_approved_proposals_pass(status):
    assert check_proposal_state(make_context(proposal={"status": status})).code == "NOT_APPROVED"


def test_a_proposal_expires_exactly_at_its_expiry_time():
    at_expiry = make_context(proposal={"expires_at": NOW})
    just_before = make_context(proposal={"expires_at": NOW + timedelta(microseconds=1)})
    assert check_proposal_state(at_expiry).code == "PROPOSAL_EXPIRED"
    assert check_proposal_state(just_before).passed


def test_an_empty_allowlist_denies_everything():
    assert check_allowlist(make_context(policy={"allowlist": ()})).code == "ALLOWLIST_EMPTY"


def test_a_market_off_the_allowlist_is_denied():
    result = check_allowlist(make_context(proposal={"market": "XRP-EUR"}))
    assert result.code == "MARKET_NOT_ALLOWED"


@pytest.mark.parametrize(
    "amount, code",
    [
        ("9.99", "ORDER_TOO_SMALL"),
        ("10.00", None),
        ("100.00", None),
        ("100.01", "ORDER_TOO_LARGE"),
    ],
)
def test_order_size_is_bounded_by_the_policy(amount, code):
    result = check_order_size(make_context(proposal={"amount_eur": Decimal(amount)}))
    assert result.code == code
    assert result.passed is (code is None)


def test_order_size_must_reach_the_exchange_minimum():
    market = MarketFacts(status="trading", min_order_in_quote=Decimal("30"))
    assert check_order_size(make_context(market=market)).code == "BELOW_EXCHANGE_MINIMUM"
    assert check_order_size(make_context(market=None)).code == "BELOW_EXCHANGE_MINIMUM"


@pytest.mark.parametrize(
    "amount, decimals, code",
    [
        ("25.5", 1, None),
        ("25.50", 1, None),  # a trailing zero is not a decimal the exchange sees
        ("25.55", 1, "TOO_MANY_DECIMALS"),
        ("25", 0, None),
        ("25.01", 2, None),
        ("25.01", 0, "TOO_MANY_DECIMALS"),
    ],
)
def test_an_amount_has_at_most_the_decimals_the_market_allows(amount, decimals, code):
    market = MarketFacts(status="trading", min_order_in_quote=Decimal("5"), quote_decimals=decimals)
    context = make_context(market=market, proposal={"amount_eur": Decimal(amount)})
    assert check_order_size(context).code == code


@pytest.mark.parametrize("confidence", [30, -25, 125])
def test_a_confidence_off_the_levels_is_invalid(confidence):
    result = check_confidence(make_context(proposal={"confidence": confidence}))
    assert result.code == "CONFIDENCE_INVALID"


def test_confidence_must_reach_the_policy_minimum():
    assert check_confidence(make_context(proposal={"confidence": 25})).code == "CONFIDENCE_TOO_LOW"
    assert check_confidence(make_context(proposal={"confidence": 50})).passed


def test_the_cooldown_ends_exactly_after_its_minutes():
    running = make_context(recent_trades=(trade(59.99),))
    over = make_context(recent_trades=(trade(60),))
    assert check_cooldown(running).code == "COOLDOWN_ACTIVE"
    assert check_cooldown(over).passed


def test_the_cooldown_is_per_asset():
    other_asset = make_context(recent_trades=(trade(1, market="ETH-EUR"),))
    same_asset_other_quote = make_context(recent_trades=(trade(1, market="BTC-USDC"),))
    assert check_cooldown(other_asset).passed
    assert check_cooldown(same_asset_other_quote).code == "COOLDOWN_ACTIVE"


def test_a_cooldown_override_lifts_only_the_cooldown():
    context = make_context(
        recent_trades=(trade(1, side="sell"),), proposal={"override_cooldown": True}
    )
    assert check_cooldown(context).passed
    assert check_anti_flip(context).code == "ANTI_FLIP"


def test_anti_flip_blocks_the_opposite_side_within_the_window():
    assert (
        check_anti_flip(make_context(recent_trades=(trade(239, side="sell"),))).code == "ANTI_FLIP"
    )
    assert check_anti_flip(make_context(recent_trades=(trade(240, side="sell"),))).passed
    assert check_anti_flip(make_context(recent_trades=(trade(5, side="buy"),))).passed


def test_an_anti_flip_override_lifts_only_the_anti_flip():
    context = make_context(
        recent_trades=(trade(1, side="sell"),), proposal={"override_anti_flip": True}
    )
    assert check_anti_flip(context).passed
    assert check_cooldown(context).code == "COOLDOWN_ACTIVE"


def test_the_daily_cap_allows_cap_minus_one_and_refuses_the_cap():
    four_today = tuple(trade(90 + i, market="ETH-EUR") for i in range(4))
    five_today = tuple(trade(90 + i, market="ETH-EUR") for i in range(5))
    assert check_daily_cap(make_context(recent_trades=four_today)).passed
    assert check_daily_cap(make_context(recent_trades=five_today)).code == "DAILY_CAP_REACHED"


def test_the_daily_cap_counts_since_utc_midnight():
    yesterday = tuple(trade(12 * 60 + 1 + i) for i in range(5))
    assert check_daily_cap(make_context(recent_trades=yesterday)).passed


def test_the_hourly_cap_allows_cap_minus_one_and_refuses_the_cap():
    one = (trade(10, market="ETH-EUR"),)
    two = (trade(10, market="ETH-EUR"), trade(59, market="ETH-EUR"))
    hour_old = (trade(10, market="ETH-EUR"), trade(60, market="ETH-EUR"))
    assert check_hourly_cap(make_context(recent_trades=one)).passed
    assert check_hourly_cap(make_context(recent_trades=two)).code == "HOURLY_CAP_REACHED"
    assert check_hourly_cap(make_context(recent_trades=hour_old)).passed


def test_a_cap_of_zero_refuses_every_trade():
    context = make_context(policy={"max_daily_trades": 0, "max_trades_per_hour": 0})
    assert check_daily_cap(context).code == "DAILY_CAP_REACHED"
    assert check_hourly_cap(context).code == "HOURLY_CAP_REACHED"


@pytest.mark.parametrize("status", ["halted", "auction", "cancelOnly"])
def test_a_market_that_is_not_trading_is_refused(status):
    market = MarketFacts(status=status, min_order_in_quote=Decimal("5"))
    assert check_market_status(make_context(market=market)).code == "MARKET_NOT_TRADING"


def test_an_unknown_market_status_is_refused():
    assert check_market_status(make_context(market=None)).code == "MARKET_NOT_TRADING"


def test_the_balance_must_cover_the_order():
    exact = BalanceFacts(available_eur=Decimal("25.00"), as_of=NOW)
    short = BalanceFacts(available_eur=Decimal("24.99"), as_of=NOW)
    assert check_balance(make_context(balance=exact)).passed
    assert check_balance(make_context(balance=short)).code == "INSUFFICIENT_BALANCE"


def test_an_unknown_balance_is_refused():
    assert check_balance(make_context(balance=None)).code == "INSUFFICIENT_BALANCE"


def sell(amount: str, **holding) -> PreflightContext:
    return make_context(proposal={"side": "sell", "amount_eur": Decimal(amount)}, holding=holding)


def test_a_sell_of_exactly_the_holding_passes_and_one_cent_more_is_refused():
    assert check_holding(sell("50.00")).passed
    refused = check_holding(sell("50.01"))
    assert (refused.passed, refused.code) == (False, "INSUFFICIENT_HOLDING")
    assert refused.detail == "The user holds 0.001 BTC (50.00 EUR); 50.01 EUR asked."


def test_a_user_without_the_asset_cannot_sell_it():
    refused = check_holding(sell("10.00", quantity=Decimal("0")))
    assert refused.code == "INSUFFICIENT_HOLDING"
    assert refused.detail == "The user holds 0 BTC (0.00 EUR); 10.00 EUR asked."


def test_open_sells_take_their_share_of_the_holding():
    refused = check_holding(sell("30.00", open_sells_eur=Decimal("25.00")))
    assert refused.code == "INSUFFICIENT_HOLDING"
    assert "25.00 EUR of it in open sells; 30.00 EUR asked" in refused.detail
    assert check_holding(sell("25.00", open_sells_eur=Decimal("25.00"))).passed


def test_a_sell_without_a_price_or_ledger_is_refused_closed():
    assert check_holding(sell("10.00", price=None)).code == "INSUFFICIENT_HOLDING"
    assert check_holding(make_context(proposal={"side": "sell"}, holding=None)).code == (
        "INSUFFICIENT_HOLDING"
    )


def test_a_buy_is_not_bounded_by_the_holding_and_a_sell_not_by_the_allocation():
    assert check_holding(make_context(holding={"quantity": Decimal("0")})).passed
    assert check_allocation(sell("10.00", cost_basis_eur=Decimal("10000"))).passed


def test_a_buy_up_to_the_allocation_passes_and_one_cent_more_is_refused():
    # 100 invested in positions + 25 in open buys + 375 = the allocation of 500.
    fits = make_context(
        proposal={"amount_eur": Decimal("375.00")}, holding={"open_buys_eur": Decimal("25")}
    )
    assert check_allocation(fits).passed
    over = replace(fits, proposal=replace(fits.proposal, amount_eur=Decimal("375.01")))
    refused = check_allocation(over)
    assert (refused.passed, refused.code) == (False, "ALLOCATION_EXCEEDED")
    assert refused.detail == (
        "125.00 EUR invested (100.00 EUR in open positions, 25.00 EUR in open buys) + 375.01 EUR "
        "asked exceeds the allocation of 500.00 EUR."
    )


def test_a_new_user_with_no_allocation_cannot_buy():
    refused = check_allocation(
        make_context(policy={"allocation_eur": Decimal("0")}, holding={"cost_basis_eur": ZERO})
    )
    assert refused.code == "ALLOCATION_EXCEEDED"


def test_the_balance_recheck_is_the_last_rule():
    names = [check.rule for check in preflight_run(make_context()).checks]
    assert names[-3:] == ["holding", "allocation", "balance"]


ZERO = Decimal("0")
