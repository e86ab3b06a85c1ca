"""Model-based test: random sequences of approve, execute, duplicate execute, lost responses,
109s, worker crashes and reconciliation, with the invariants checked after every step.

Fixed seed (derandomize) and bounded steps, so CI runs the same sequences every time.
"""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from tests.factories import PolicyFactory, TradeProposalFactory
from trading import send
from trading.claim import execution_claim
from trading.models import TradeExecution
from trading.reconcile import executions_reconcile
from trading.services import proposal_approve

HOURLY_CAP = 3


class ExecutionMachine(RuleBasedStateMachine):
    exchange = None  # set by the test before the machine runs

    proposals = Bundle("proposals")

    @initialize()
    def start(self):
        self.exchange.control.reset()
        self.policy = PolicyFactory(
            max_trades_per_hour=HOURLY_CAP,
            max_daily_trades=50,
            cooldown_minutes=0,
            anti_flip_minutes=0,
        )
        self.user = self.policy.user

    @rule(target=proposals, market=st.sampled_from(["BTC-EUR", "ETH-EUR"]))
    def propose(self, market):
        return TradeProposalFactory(user=self.user, market=market)

    @rule(proposal=proposals)
    def approve(self, proposal):
        proposal.refresh_from_db()
        if proposal.status == "PENDING":
            proposal_approve(proposal=proposal, actor=self.user)

    @rule(proposal=proposals)
    def execute(self, proposal):
        send.execution_run(proposal=proposal)

    @rule(proposal=proposals)
    def duplicate_execute(self, proposal):
        send.execution_run(proposal=proposal)
        send.execution_run(proposal=proposal)

    @rule(proposal=proposals, fault=st.sampled_from(["drop_after_commit", "error_109_no_commit"]))
    def execute_with_fault(self, proposal, fault):
        self.exchange.control.inject(fault)
        send.execution_run(proposal=proposal)
        self.exchange.control.reset_faults()

    @rule(proposal=proposals)
    def worker_crash_after_claim(self, proposal):
        # The worker dies after claiming and marking SUBMITTING, before the order is sent.
        outcome = execution_claim(proposal=proposal, actor_id=None)
        if outcome.execution is not None and outcome.execution.status == "CLAIMED":
            send._mark_submitting(outcome.execution)

    @rule()
    def reconcile(self):
        executions_reconcile()

    def _executions(self):
        return list(TradeExecution.objects.filter(user=self.user))

    @invariant()
    def at_most_one_order_per_proposal(self):
        ids = [o["clientOrderId"] for o in self.exchange.orders()]
        assert all(count == 1 for count in Counter(ids).values())
        ours = {str(e.client_order_id) for e in self._executions()}
        assert set(ids) <= ours, "every exchange order belongs to an execution"

    @invariant()
    def submitted_rows_match_orders_both_ways(self):
        orders = {o["orderId"]: o["clientOrderId"] for o in self.exchange.orders()}
        submitted = {
            e.exchange_order_id: str(e.client_order_id)
            for e in self._executions()
            if e.status == "SUBMITTED"
        }
        for order_id, client_id in submitted.items():
            assert orders.get(order_id) == client_id
        undecided = {str(e.client_order_id) for e in self._executions() if e.status == "SUBMITTING"}
        for order_id, client_id in orders.items():
            assert order_id in submitted or client_id in undecided

    @invariant()
    def caps_never_exceeded(self):
        hour_ago = timezone.now() - timedelta(hours=1)
        live = [e for e in self._executions() if e.status != "FAILED" and e.claimed_at > hour_ago]
        assert len(live) <= HOURLY_CAP
        assert len(self.exchange.orders()) <= HOURLY_CAP


@pytest.mark.django_db(transaction=True)
def test_execution_invariants_hold_for_random_sequences(exchange, settings):
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    settings.BITVAVO_ACCESS_WINDOW_MS = 100
    settings.BITVAVO_READ_TIMEOUT = 0.1
    ExecutionMachine.exchange = exchange
    machine_test = ExecutionMachine.TestCase
    machine_test.settings = hypothesis_settings(
        max_examples=12,
        stateful_step_count=15,
        derandomize=True,
        deadline=None,
        database=None,
    )
    machine_test("runTest").runTest()
