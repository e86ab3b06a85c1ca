"""The market's rules (decimals, minimum, status) are applied before an order is sent.

The simulator publishes changed rules and would refuse such orders itself; every test
counts the orders that reached it and the order calls that were made: none.
"""

from decimal import Decimal

import pytest
from django.core.cache import cache

from exchange.models import ExchangeCall
from exchange.rules_cache import market_rules_forget
from tests.factories import PolicyFactory, TradeProposalFactory
from trading.claim import execution_claim
from trading.models import TradeExecution, TradeProposal
from trading.send import execution_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def policy(db):
    return PolicyFactory(cooldown_minutes=0, anti_flip_minutes=0)


def order_calls() -> int:
    return ExchangeCall.objects.filter(method="POST", path__endswith="/order").count()


def test_an_amount_with_more_decimals_than_the_market_allows_is_refused(policy, exchange):
    exchange.control.set_market_rules("BTC-EUR", notionalDecimals=1)
    proposal = TradeProposalFactory(user=policy.user, approved=True, amount_eur=Decimal("25.55"))

    outcome = execution_run(proposal=proposal)

    assert outcome.refused
    assert outcome.refused_codes == ["TOO_MANY_DECIMALS"]
    assert exchange.orders() == [] and order_calls() == 0
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.APPROVED, "nothing claimed, nothing cut"


def test_the_same_amount_passes_where_the_market_allows_its_decimals(policy, exchange):
    exchange.control.set_market_rules("BTC-EUR", notionalDecimals=1)
    proposal = TradeProposalFactory(user=policy.user, approved=True, amount_eur=Decimal("25.50"))

    outcome = execution_run(proposal=proposal)

    assert outcome.execution.status == TradeExecution.Status.SUBMITTED
    assert [order["amountQuote"] for order in exchange.orders()] == ["25.5"]


def test_an_amount_below_the_market_minimum_is_refused(policy, exchange):
    exchange.control.set_market_rules("BTC-EUR", minOrderInQuoteAsset="30.00")
    proposal = TradeProposalFactory(user=policy.user, approved=True, amount_eur=Decimal("25.00"))

    outcome = execution_run(proposal=proposal)

    assert outcome.refused_codes == ["BELOW_EXCHANGE_MINIMUM"]
    assert exchange.orders() == [] and order_calls() == 0


@pytest.mark.parametrize(
    ("rules", "code"),
    [
        ({"minOrderInQuoteAsset": "30.00"}, "EXCHANGE_BELOW_MINIMUM"),
        ({"status": "halted"}, "EXCHANGE_MARKET_NOT_TRADING"),
    ],
)
def test_the_send_step_applies_the_rules_as_they_are_when_it_sends(policy, exchange, rules, code):
    # Claimed (by the web, say) under the old rules; the rules change before the worker sends.
    proposal = TradeProposalFactory(user=policy.user, approved=True, amount_eur=Decimal("25.00"))
    claimed = execution_claim(proposal=proposal, actor_id=None)
    assert claimed.execution.status == TradeExecution.Status.CLAIMED
    if "status" in rules:
        exchange.control.set_market_status("BTC-EUR", rules["status"])
    else:
        exchange.control.set_market_rules("BTC-EUR", **rules)
    cache.clear()
    market_rules_forget()

    outcome = execution_run(proposal=proposal)

    execution = outcome.execution
    assert execution.pk == claimed.execution.pk
    assert execution.status == TradeExecution.Status.FAILED
    assert execution.error_code == code
    assert exchange.orders() == [] and order_calls() == 0, "refused here, never sent"
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.FAILED
