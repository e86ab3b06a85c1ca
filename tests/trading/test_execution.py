"""The execution engine against the Bitvavo simulator over real HTTP, on real PostgreSQL.

Concurrency claims are shown by running the competitors in parallel threads (each with its
own database connection) and counting the orders that reached the simulator.
"""

import multiprocessing
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory, holding_give
from tests.threads import run_in_parallel
from trading.claim import client_order_id_for, execution_claim
from trading.models import ProposalEvent, TradeExecution, TradeHistory, TradeProposal
from trading.reconcile import executions_reconcile
from trading.send import _mark_submitting, execution_run
from trading.services import emergency_stop_set, proposal_override_set

# Everything here runs on PostgreSQL and, in `make test`'s second run, on SQLite (the demo).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def execute(proposal):
    return execution_run(proposal=proposal)


def approved(user, **fields):
    return TradeProposalFactory(user=user, approved=True, **fields)


@pytest.fixture
def policy(db):
    return PolicyFactory(
        max_daily_trades=50, max_trades_per_hour=50, cooldown_minutes=0, anti_flip_minutes=0
    )


def test_an_approved_proposal_becomes_one_filled_order(policy, exchange):
    proposal = approved(policy.user)

    outcome = execution_run(proposal=proposal)

    execution = outcome.execution
    assert outcome.created
    assert execution.status == TradeExecution.Status.SUBMITTED
    assert execution.client_order_id == client_order_id_for(proposal.pk)
    orders = exchange.orders()
    assert len(orders) == 1
    assert orders[0]["orderId"] == execution.exchange_order_id
    assert orders[0]["clientOrderId"] == str(execution.client_order_id)
    assert execution.bitvavo_request["amountQuote"] == "25.00"
    assert execution.bitvavo_response["orderId"] == execution.exchange_order_id
    assert execution.preflight_result["passed"] is True
    assert len(execution.preflight_result["checks"]) == 14
    assert execution.policy_hash == policy.snapshot_and_hash()[1]
    history = TradeHistory.objects.get(execution=execution)
    assert history.asset == "BTC" and history.amount > 0 and history.price > 0
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.EXECUTED


def test_a_repeated_execute_returns_the_same_execution_without_a_second_order(policy, exchange):
    proposal = approved(policy.user)
    first = execution_run(proposal=proposal).execution
    again = execution_run(proposal=proposal)
    assert not again.created
    assert again.execution.pk == first.pk
    assert len(exchange.orders()) == 1


def test_a_retry_storm_of_24_executes_gives_exactly_one_order(policy, exchange):
    proposal = approved(policy.user)

    results = run_in_parallel(execute, [(proposal,)] * 24)

    assert not [r for r in results if isinstance(r, Exception)]
    assert {r.execution.pk for r in results} == {TradeExecution.objects.get().pk}
    assert sum(1 for r in results if r.created) == 1
    assert len(exchange.orders()) == 1


def _execute_in_child(proposal, start, results):
    start.wait()
    try:
        outcome = execution_run(proposal=proposal)
        results.put((outcome.created, outcome.execution.pk, outcome.execution.status))
    except Exception as error:  # reported to the parent, which asserts on it
        results.put(repr(error))
    finally:
        connections.close_all()


def test_a_retry_storm_across_processes_gives_exactly_one_order(policy, exchange):
    proposal = approved(policy.user)
    connections.close_all()  # the children open their own connections
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(6), fork.Queue()
    children = [
        fork.Process(target=_execute_in_child, args=(proposal, start, results)) for _ in range(6)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=30)

    assert all(isinstance(outcome, tuple) for outcome in outcomes), outcomes
    execution = TradeExecution.objects.get()
    assert {pk for _, pk, _ in outcomes} == {execution.pk}
    assert sum(1 for created, _, _ in outcomes if created) == 1
    assert execution.status == "SUBMITTED"
    assert len(exchange.orders()) == 1


def test_the_balance_recheck_counts_every_claim_since_the_snapshot(policy, exchange):
    from exchange.services import balances_refresh

    exchange.control.set_balance("EUR", "40")
    balances_refresh()
    other = PolicyFactory(cooldown_minutes=0, anti_flip_minutes=0)
    # The account is shared: another user's claim since the snapshot counts too.
    assert execution_run(proposal=approved(other.user)).execution.status == "SUBMITTED"

    outcome = execution_run(proposal=approved(policy.user, market="ETH-EUR"))

    assert outcome.refused_codes == ["INSUFFICIENT_BALANCE"]
    assert len(exchange.orders()) == 1


def test_the_hourly_cap_is_exact_under_concurrency(exchange):
    policy = PolicyFactory(max_trades_per_hour=3, max_daily_trades=50, cooldown_minutes=0)
    proposals = [approved(policy.user, market=market) for market in ["BTC-EUR", "ETH-EUR"] * 5]

    results = run_in_parallel(execute, [(p,) for p in proposals])

    assert not [r for r in results if isinstance(r, Exception)]
    refused = [r for r in results if r.refused]
    assert len(refused) == 7
    assert all(r.refused_codes == ["HOURLY_CAP_REACHED"] for r in refused)
    assert len(exchange.orders()) == 3
    assert TradeExecution.objects.filter(status="SUBMITTED").count() == 3


def test_the_cooldown_is_exact_under_concurrency(exchange):
    policy = PolicyFactory(
        cooldown_minutes=60, anti_flip_minutes=0, max_trades_per_hour=50, max_daily_trades=50
    )
    proposals = [approved(policy.user) for _ in range(10)]

    results = run_in_parallel(execute, [(p,) for p in proposals])

    refused = [r for r in results if r.refused]
    assert len(refused) == 9
    assert all(r.refused_codes == ["COOLDOWN_ACTIVE"] for r in refused)
    assert len(exchange.orders()) == 1


def test_a_refused_preflight_claims_nothing_and_is_audited(policy, exchange):
    proposal = approved(policy.user, confidence=25)

    outcome = execution_run(proposal=proposal, actor_id=policy.user.pk)

    assert outcome.refused and outcome.refused_codes == ["CONFIDENCE_TOO_LOW"]
    assert not TradeExecution.objects.exists()
    event = ProposalEvent.objects.get(proposal=proposal, kind="preflight_failed")
    assert event.actor_id == policy.user.pk
    assert event.data["failed_codes"] == ["CONFIDENCE_TOO_LOW"]
    assert len(event.data["checks"]) == 14
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.APPROVED
    assert exchange.orders() == []


def test_a_refused_proposal_executes_once_the_reason_is_gone(policy, exchange):
    proposal = approved(policy.user, amount_eur=Decimal("150"))
    assert execution_run(proposal=proposal).refused_codes == ["ORDER_TOO_LARGE"]
    policy.max_order_eur = Decimal("200")
    policy.save()
    assert execution_run(proposal=proposal).execution.status == "SUBMITTED"
    assert len(exchange.orders()) == 1


def test_the_emergency_stop_blocks_every_concurrent_execute(policy, exchange):
    proposals = [approved(policy.user, market=m) for m in ["BTC-EUR", "ETH-EUR"] * 4]
    emergency_stop_set(active=True, actor=UserFactory(), reason="Exchange incident")

    results = run_in_parallel(execute, [(p,) for p in proposals])

    assert all(r.refused and "KILL_SWITCH" in r.refused_codes for r in results)
    assert exchange.orders() == []


def test_the_user_kill_switch_blocks_every_execute(exchange):
    policy = PolicyFactory(trading_enabled=False)
    proposal = approved(policy.user)
    assert execution_run(proposal=proposal).refused_codes == ["KILL_SWITCH"]
    assert exchange.orders() == []


def test_an_empty_allowlist_blocks_everything(exchange):
    policy = PolicyFactory(allowlist=[])
    results = [
        execution_run(proposal=approved(policy.user, market=m)) for m in ("BTC-EUR", "ETH-EUR")
    ]
    assert all(r.refused_codes == ["ALLOWLIST_EMPTY"] for r in results)
    assert exchange.orders() == []


def test_an_override_lifts_exactly_its_one_rule(exchange):
    policy = PolicyFactory(
        cooldown_minutes=60, anti_flip_minutes=240, max_trades_per_hour=50, max_daily_trades=50
    )
    holding_give(policy.user, quantity="0.01")  # a month old: no cooldown or anti-flip yet
    assert execution_run(proposal=approved(policy.user, side="sell")).execution
    staff = UserFactory()

    # A buy of the same asset now hits both the cooldown and anti-flip.
    blocked = approved(policy.user, side="buy", confidence=25)
    codes = execution_run(proposal=blocked).refused_codes
    assert codes == ["CONFIDENCE_TOO_LOW", "COOLDOWN_ACTIVE", "ANTI_FLIP"]

    proposal_override_set(proposal=blocked, actor=staff, cooldown=True, anti_flip=False, reason="r")
    assert execution_run(proposal=blocked).refused_codes == [
        "CONFIDENCE_TOO_LOW",
        "ANTI_FLIP",
    ]
    proposal_override_set(proposal=blocked, actor=staff, cooldown=True, anti_flip=True, reason="r")
    assert execution_run(proposal=blocked).refused_codes == ["CONFIDENCE_TOO_LOW"]

    # The override belongs to its proposal: another one is still blocked.
    other = approved(policy.user, side="buy")
    assert execution_run(proposal=other).refused_codes == ["COOLDOWN_ACTIVE", "ANTI_FLIP"]
    assert len(exchange.orders()) == 1


def test_an_expired_proposal_never_executes(policy, exchange):
    proposal = approved(policy.user, expires_at=timezone.now() - timedelta(seconds=1))
    assert execution_run(proposal=proposal).refused_codes == ["PROPOSAL_EXPIRED"]
    assert exchange.orders() == []


def test_a_stop_flipped_after_the_claim_sends_nothing_and_can_run_again(policy, exchange):
    """The move to SUBMITTING re-checks the switches in the same statement; a refusal there
    takes the claim back, as a refused preflight claims nothing."""
    proposal = approved(policy.user)
    outcome = execution_claim(proposal=proposal, actor_id=None)
    emergency_stop_set(active=True, actor=UserFactory(), reason="halt")
    assert _mark_submitting(outcome.execution) is False

    # The next attempt finds the claim, cannot send it, and withdraws it: nothing was sent.
    refused = execution_run(proposal=proposal)

    assert refused.refused and refused.refused_codes == ["KILL_SWITCH"]
    assert exchange.orders() == []
    assert not TradeExecution.objects.exists()
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.APPROVED
    event = ProposalEvent.objects.get(proposal=proposal, kind="preflight_failed")
    assert event.data["failed_codes"] == ["KILL_SWITCH"]
    assert event.data["execution_id"] == outcome.execution.pk

    emergency_stop_set(active=False, actor=UserFactory(), reason="over")
    assert execution_run(proposal=proposal).execution.status == "SUBMITTED"
    assert len(exchange.orders()) == 1


def test_a_missing_emergency_stop_row_refuses_the_send(policy, exchange):
    from trading.models import EmergencyStop

    proposal = approved(policy.user)
    claimed = execution_claim(proposal=proposal, actor_id=None).execution
    EmergencyStop.objects.all().delete()

    refused = execution_run(proposal=proposal)

    assert refused.refused_codes == ["KILL_SWITCH"]
    assert exchange.orders() == []
    assert not TradeExecution.objects.filter(pk=claimed.pk).exists()


def test_a_definite_rejection_fails_the_execution(policy, exchange):
    exchange.control.set_balance("EUR", "1")
    proposal = approved(policy.user)
    # The snapshot says there is money; the exchange knows better and refuses (216).
    execution = execution_run(proposal=proposal).execution
    assert execution.status == "FAILED"
    assert execution.error_code
    assert execution.submitting_at is not None
    assert exchange.orders() == []
    proposal.refresh_from_db()
    assert proposal.status == "FAILED"


def reconcile_until_decided(rounds=6):
    for _ in range(rounds):
        executions_reconcile()
        if not TradeExecution.objects.filter(status="SUBMITTING").exists():
            return


@pytest.mark.parametrize("fault", ["drop_after_commit", "error_101_after_commit"])
def test_a_lost_response_is_reconciled_to_the_right_order(policy, exchange, settings, fault):
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    proposal = approved(policy.user)
    exchange.control.inject(fault)

    execution = execution_run(proposal=proposal).execution
    assert execution.status == "SUBMITTING"
    assert len(exchange.orders()) == 1

    # Executing again never sends a second order while the outcome is unknown.
    assert execution_run(proposal=proposal).execution.status == "SUBMITTING"
    reconcile_until_decided()

    execution.refresh_from_db()
    assert execution.status == "SUBMITTED"
    assert execution.exchange_order_id == exchange.orders()[0]["orderId"]
    assert TradeHistory.objects.filter(execution=execution).count() == 1
    assert len(exchange.orders()) == 1


def test_a_request_that_never_reached_the_book_fails_after_the_window(policy, exchange, settings):
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    settings.BITVAVO_ACCESS_WINDOW_MS = 100
    settings.BITVAVO_READ_TIMEOUT = 0.1
    proposal = approved(policy.user)
    exchange.control.inject("error_109_no_commit")

    execution = execution_run(proposal=proposal).execution
    assert execution.status == "SUBMITTING"

    executions_reconcile()
    executions_reconcile()
    execution.refresh_from_db()
    assert execution.status == "SUBMITTING", "two lookups are not enough to give up"
    time.sleep(0.25)  # past the access window (0.1 s) plus the read timeout (0.1 s)
    executions_reconcile()

    execution.refresh_from_db()
    assert execution.status == "FAILED"
    assert execution.error_code == "ORDER_NOT_FOUND_AFTER_TIMEOUT"
    assert exchange.orders() == []


def test_a_rate_limited_order_goes_back_to_claimed_and_is_sent_later(policy, exchange):
    from django.core.cache import cache

    proposal = approved(policy.user)
    exchange.control.inject("ban_429", seconds=30)

    first = execution_run(proposal=proposal)

    assert first.execution.status == "CLAIMED"
    assert 0 < first.retry_after_seconds <= 30
    assert first.execution.submitting_at is None
    assert exchange.orders() == []

    # The ban is over (here: forgotten); the retry sends the same claim, once.
    exchange.control.reset()
    cache.clear()
    again = execution_run(proposal=proposal)
    assert again.execution.pk == first.execution.pk
    assert again.execution.status == "SUBMITTED"
    assert len(exchange.orders()) == 1
