"""Each user trades only their own share of the shared account: a sell is bounded by the
user's holding (from their own fills, less their open sells), a buy by their allocation
(open positions at cost, open buys and the buy). On real PostgreSQL (and SQLite, the demo)
against the simulator over HTTP; concurrent claims run in parallel threads, each with its
own connection, and the orders that reached the simulator are counted."""

from decimal import Decimal

import pytest

from tests.factories import PolicyFactory, TradeProposalFactory, holding_give
from tests.threads import run_in_parallel
from trading.models import ProposalEvent, TradeExecution
from trading.preflight import preflight_preview
from trading.send import execution_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

PRICE = Decimal("50000")


@pytest.fixture
def policy(db):
    return PolicyFactory(
        max_daily_trades=50,
        max_trades_per_hour=50,
        cooldown_minutes=0,
        anti_flip_minutes=0,
        max_order_eur=Decimal("500"),
    )


@pytest.fixture
def priced(exchange):
    """BTC-EUR at a fixed price, so a holding's value is known to the cent."""
    exchange.control.set_price("BTC-EUR", PRICE)
    return exchange


def proposal(user, side, amount):
    return TradeProposalFactory(user=user, approved=True, side=side, amount_eur=Decimal(amount))


def refused_codes(outcome) -> list[str]:
    assert outcome.execution is None, "the proposal was executed"
    return outcome.refused_codes


def test_a_user_without_btc_cannot_sell_btc_and_nothing_reaches_the_exchange(policy, priced):
    # The shared account holds BTC (the simulator starts with 0.5), but none of it is theirs.
    sell = proposal(policy.user, "sell", "50.00")

    outcome = execution_run(proposal=sell)

    assert refused_codes(outcome) == ["INSUFFICIENT_HOLDING"]
    holding = next(c for c in outcome.preflight["checks"] if c["rule"] == "holding")
    assert holding["detail"] == "The user holds 0 BTC (0.00 EUR); 50.00 EUR asked."
    assert priced.orders() == []
    assert not TradeExecution.objects.filter(proposal=sell).exists()
    event = ProposalEvent.objects.get(proposal=sell, kind=ProposalEvent.Kind.PREFLIGHT_FAILED)
    assert event.data["failed_codes"] == ["INSUFFICIENT_HOLDING"]


def test_a_sell_of_exactly_the_holding_passes_and_one_cent_more_is_refused(policy, priced):
    holding_give(policy.user, quantity="0.001", price="40000")  # 50.00 EUR at today's price

    over = execution_run(proposal=proposal(policy.user, "sell", "50.01"))
    assert refused_codes(over) == ["INSUFFICIENT_HOLDING"]
    assert priced.orders() == []

    exact = execution_run(proposal=proposal(policy.user, "sell", "50.00"))
    assert exact.execution.status == TradeExecution.Status.SUBMITTED
    assert [o["side"] for o in priced.orders()] == ["sell"]
    # Sold: nothing of it is left to sell again.
    again = preflight_preview(proposal=proposal(policy.user, "sell", "10.00"))
    assert again.failed_codes == ["INSUFFICIENT_HOLDING"]


def test_another_users_holding_is_not_yours_to_sell(policy, priced):
    other = PolicyFactory()
    holding_give(other.user, quantity="0.01")

    outcome = execution_run(proposal=proposal(policy.user, "sell", "20.00"))

    assert refused_codes(outcome) == ["INSUFFICIENT_HOLDING"]
    assert priced.orders() == []


def test_concurrent_sells_of_one_holding_pass_only_as_far_as_it_goes(policy, priced):
    holding_give(policy.user, quantity="0.002")  # 100.00 EUR: three sells of 30 fit, not four
    sells = [proposal(policy.user, "sell", "30.00") for _ in range(5)]

    results = run_in_parallel(lambda p: execution_run(proposal=p), [(p,) for p in sells])

    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    executed = [r for r in results if r.execution is not None]
    refused = [r for r in results if r.execution is None]
    assert len(executed) == 3
    assert [r.refused_codes for r in refused] == [["INSUFFICIENT_HOLDING"]] * 2
    assert len(priced.orders()) == 3
    assert TradeExecution.objects.filter(side="sell").count() == 3


def test_two_concurrent_sells_of_the_whole_holding_cannot_both_pass(policy, priced):
    holding_give(policy.user, quantity="0.001")  # 50.00 EUR
    sells = [proposal(policy.user, "sell", "50.00") for _ in range(2)]

    results = run_in_parallel(lambda p: execution_run(proposal=p), [(p,) for p in sells])

    assert sorted(r.execution is None for r in results) == [False, True]
    assert len(priced.orders()) == 1


def test_a_buy_over_the_allocation_is_refused_and_reaches_nothing(policy, priced):
    policy.allocation_eur = Decimal("100")
    policy.save()
    holding_give(policy.user, quantity="0.0012", price="50000")  # 60 EUR invested

    over = execution_run(proposal=proposal(policy.user, "buy", "40.01"))
    assert refused_codes(over) == ["ALLOCATION_EXCEEDED"]
    detail = next(c for c in over.preflight["checks"] if c["rule"] == "allocation")["detail"]
    assert detail == (
        "60.00 EUR invested (60.00 EUR in open positions, 0.00 EUR in open buys) + 40.01 EUR "
        "asked exceeds the allocation of 100.00 EUR."
    )
    assert priced.orders() == []

    fits = execution_run(proposal=proposal(policy.user, "buy", "40.00"))
    assert fits.execution.status == TradeExecution.Status.SUBMITTED
    assert len(priced.orders()) == 1


def test_a_new_user_has_no_allocation_and_cannot_buy(priced):
    policy = PolicyFactory(allocation_eur=Decimal("0"))

    outcome = execution_run(proposal=proposal(policy.user, "buy", "25.00"))

    assert refused_codes(outcome) == ["ALLOCATION_EXCEEDED"]
    assert priced.orders() == []


def test_concurrent_buys_count_each_others_claims_against_the_allocation(policy, priced):
    policy.allocation_eur = Decimal("100")
    policy.save()
    buys = [proposal(policy.user, "buy", "30.00") for _ in range(4)]

    results = run_in_parallel(lambda p: execution_run(proposal=p), [(p,) for p in buys])

    assert [r for r in results if isinstance(r, Exception)] == []
    assert sum(r.execution is not None for r in results) == 3
    assert [r.refused_codes for r in results if r.execution is None] == [["ALLOCATION_EXCEEDED"]]
    assert len(priced.orders()) == 3
