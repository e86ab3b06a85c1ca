"""The reconciler under faults, against the simulator over real HTTP: the exchange's clock
skewed both ways, lost answers, lookups that miss, slow lookups, many undecided rows."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from tests.factories import PolicyFactory, TradeProposalFactory
from trading.models import TradeExecution, TradeHistory
from trading.reconcile import executions_reconcile
from trading.send import execution_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def policy(db):
    return PolicyFactory(
        max_daily_trades=50, max_trades_per_hour=50, cooldown_minutes=0, anti_flip_minutes=0
    )


def skew_clock(exchange, ms: int) -> None:
    """The exchange's clock runs `ms` ahead of ours; what our transports knew of it is gone."""
    exchange.control.set_clock_skew(ms)
    cache.clear()


@pytest.mark.parametrize("skew_ms", [-15_000, 15_000])
def test_a_lost_filled_order_is_found_in_exchange_time(policy, exchange, settings, skew_ms):
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    skew_clock(exchange, skew_ms)
    # The answer is lost, and a lookup by clientOrderId misses closed orders (the
    # simulator's default, Bitvavo's worst case): only the order list can find it.
    exchange.control.inject("drop_after_commit")
    proposal = TradeProposalFactory(user=policy.user, approved=True)

    execution = execution_run(proposal=proposal).execution
    assert execution.status == "SUBMITTING"
    (order,) = exchange.orders()
    assert abs(order["created"] - execution.submitting_at.timestamp() * 1000 - skew_ms) < 5_000

    for _ in range(settings.EXECUTION_RECONCILE_MIN_LOOKUPS + 1):
        executions_reconcile()
    execution.refresh_from_db()
    assert (execution.status, execution.error_code) == ("SUBMITTED", "")
    assert execution.exchange_order_id == order["orderId"]
    assert TradeHistory.objects.filter(execution=execution).count() == 1
    assert len(exchange.orders()) == 1


def submitting_long_ago(execution: TradeExecution) -> None:
    """As if it had been sent an hour ago: every window has passed."""
    TradeExecution.objects.filter(pk=execution.pk).update(
        submitting_at=timezone.now() - timedelta(hours=1)
    )


def test_not_found_is_never_concluded_while_the_clock_is_unknown_or_too_far_off(
    policy, exchange, settings
):
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    settings.BITVAVO_ACCESS_WINDOW_MS = 1_000
    exchange.control.inject("error_109_no_commit")  # never reached the book
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    execution = execution_run(proposal=proposal).execution
    assert execution.status == "SUBMITTING"
    submitting_long_ago(execution)
    lookups = settings.EXECUTION_RECONCILE_MIN_LOOKUPS + 1

    # Off by more than the access window (compensated, but too far to trust "not found").
    skew_clock(exchange, 3_000)
    outcomes = [executions_reconcile() for _ in range(lookups)]
    assert outcomes == [{"clock_unsure": 1}] * lookups
    # The offset cannot be read at all: no lookup, no conclusion.
    skew_clock(exchange, 0)
    exchange.control.inject("html_502_no_commit", times=lookups, method="GET", path="/time")
    outcomes = [executions_reconcile() for _ in range(lookups)]
    assert outcomes == [{"lookup_failed": 1}] * lookups
    execution.refresh_from_db()
    assert execution.status == "SUBMITTING"

    # The clock is known and close: now "not found" is a conclusion.
    assert executions_reconcile() == {"failed": 1}
    execution.refresh_from_db()
    assert execution.error_code == "ORDER_NOT_FOUND_AFTER_TIMEOUT"
    assert exchange.orders() == []


def test_a_304_fails_the_execution_but_the_proposal_runs_again_once(policy, exchange):
    # The order's timestamp is outside the access window (a clock that jumped): the
    # exchange refuses it (304) before its engine.
    exchange.control.inject("error_304")
    proposal = TradeProposalFactory(user=policy.user, approved=True)

    first = execution_run(proposal=proposal).execution
    assert (first.status, first.error_code) == ("FAILED", "EXCHANGE_CLOCK_DRIFT")
    proposal.refresh_from_db()
    assert proposal.status == "APPROVED"
    assert exchange.orders() == []

    again = execution_run(proposal=proposal).execution  # the clock is learned again
    assert again.pk == first.pk, "still one execution per proposal"
    assert (again.status, again.error_code) == ("SUBMITTED", "")
    assert [a["error_code"] for a in again.preflight_result["earlier_attempts"]] == [
        "EXCHANGE_CLOCK_DRIFT"
    ]
    assert [o["clientOrderId"] for o in exchange.orders()] == [str(first.client_order_id)]
    assert execution_run(proposal=proposal).execution.pk == first.pk
    assert len(exchange.orders()) == 1
    proposal.refresh_from_db()
    assert proposal.status == "EXECUTED"
