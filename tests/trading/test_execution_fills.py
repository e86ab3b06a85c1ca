"""What the exchange filled is what the execute path records, through the real send step
and the reconciler against the simulator over HTTP: partial fills under market protection,
expiry with nothing filled, and answers that come before the fills."""

from decimal import Decimal

import pytest

from tests.factories import PolicyFactory, TradeProposalFactory, holding_give
from trading.models import TradeExecution, TradeHistory, TradeProposal
from trading.reconcile import executions_reconcile
from trading.send import execution_run

pytestmark = pytest.mark.django_db

Status = TradeExecution.Status


@pytest.fixture
def policy(db):
    policy = PolicyFactory(
        max_daily_trades=50, max_trades_per_hour=50, cooldown_minutes=0, anti_flip_minutes=0
    )
    holding_give(policy.user, quantity="0.01")  # BTC of the user's own to sell
    return policy


def run(policy, side="buy", amount="20.00"):
    proposal = TradeProposalFactory(
        user=policy.user, approved=True, side=side, amount_eur=Decimal(amount)
    )
    execution = execution_run(proposal=proposal).execution
    execution.refresh_from_db()
    proposal.refresh_from_db()
    return execution, proposal


def history_eur(execution) -> Decimal:
    return sum(
        (row.amount_eur for row in TradeHistory.objects.filter(execution=execution)), Decimal(0)
    )


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_market_protection_that_fills_half_is_a_partial_execution(policy, exchange, side):
    exchange.control.set_fill_mode("canceledMarketProtection", fraction="0.5", fills=2)

    execution, proposal = run(policy, side=side)

    assert execution.status == Status.SUBMITTED and execution.partially_filled
    assert execution.exchange_status == "canceledMarketProtection"
    (order,) = exchange.orders()
    assert execution.filled_eur == Decimal(order["filledAmountQuote"])
    assert Decimal("9.9") < execution.filled_eur <= Decimal("10.00"), "half of 20.00 EUR"
    assert history_eur(execution) == execution.filled_eur
    assert TradeHistory.objects.filter(execution=execution).count() == 2, "one row per fill"
    assert proposal.status == TradeProposal.Status.EXECUTED and proposal.partially_executed
    assert exchange.orders() == [order], "nothing is re-sent for the rest"


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_that_expires_with_nothing_filled_fails_and_writes_no_history(
    policy, exchange, side
):
    exchange.control.set_fill_mode("expired")

    execution, proposal = run(policy, side=side)

    assert execution.status == Status.FAILED
    assert execution.error_code == "ORDER_NOT_FILLED" and "expired" in execution.error_message
    assert not TradeHistory.objects.filter(execution=execution).exists()
    assert proposal.status == TradeProposal.Status.FAILED
    assert len(exchange.orders()) == 1


def test_an_answer_before_the_fills_is_looked_up_until_final(policy, exchange):
    exchange.control.set_fill_mode("filled", answer="new", settle_after_lookups=1)

    execution, proposal = run(policy)

    assert execution.status == Status.SUBMITTED and not execution.partially_filled
    assert execution.filled_eur > Decimal("19.9") and history_eur(execution) == execution.filled_eur
    assert execution.fee_eur > 0
    assert proposal.status == TradeProposal.Status.EXECUTED


def test_an_order_still_open_after_the_send_step_is_finished_by_the_reconciler_once(
    policy, exchange, settings
):
    settings.EXECUTION_FILL_WAIT_SECONDS = 0
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    exchange.control.set_fill_mode("filled", answer="new", settle_after_lookups=2)

    execution, _ = run(policy)
    assert execution.status == Status.SUBMITTING and execution.exchange_order_id
    assert not TradeHistory.objects.filter(execution=execution).exists(), "not final yet"

    executions_reconcile()  # the first lookup: still open
    executions_reconcile()  # the second: final
    executions_reconcile()  # nothing left to do
    execution.refresh_from_db()

    assert execution.status == Status.SUBMITTED
    assert execution.filled_eur > Decimal("19.9") and history_eur(execution) == execution.filled_eur
    assert len(exchange.orders()) == 1
