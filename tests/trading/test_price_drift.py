"""The price-drift guard: an order is refused with PRICE_DRIFT when the market moved against
the proposal by more than the policy's max_price_drift_pct since price_at_proposal (a buy
whose price rose, a sell whose price fell); it is overridable and audited like the cooldown,
and the decision screen shows it before anyone clicks."""

from dataclasses import replace
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from exchange.readonly import ReadonlyClient
from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory
from tests.trading.test_validators import make_context
from trading.claim import execution_claim
from trading.decision import proposal_decision
from trading.models import ProposalEvent, TradeExecution
from trading.services import proposal_override_set
from trading.validators import check_price_drift


def drift_context(*, side="buy", at="100", now="101.5", limit="1.0", **proposal):
    ctx = make_context()
    return replace(
        ctx,
        proposal=replace(
            ctx.proposal,
            side=side,
            price_at_proposal=None if at is None else Decimal(at),
            **proposal,
        ),
        policy=replace(ctx.policy, max_price_drift_pct=Decimal(limit)),
        price_now=None if now is None else Decimal(now),
    )


@pytest.mark.parametrize(
    "side, now, refused",
    [
        ("buy", "101.5", True),  # rose 1.5 %: against a buy
        ("buy", "101", False),  # exactly the limit is allowed
        ("buy", "90", False),  # fell: in its favour, however far
        ("sell", "98.5", True),  # fell 1.5 %: against a sell
        ("sell", "110", False),
    ],
)
def test_a_move_against_the_proposal_beyond_the_limit_is_refused(side, now, refused):
    result = check_price_drift(drift_context(side=side, now=now))
    assert (result.passed, result.code) == ((False, "PRICE_DRIFT") if refused else (True, None))
    assert "the policy allows 1.0 %" in result.detail
    assert "from 100.00 EUR to" in result.detail


def test_the_refusal_says_how_far_it_moved_in_plain_words():
    result = check_price_drift(drift_context(now="101.5"))
    assert result.detail == (
        "The price moved 1.50 % against the buy (from 100.00 EUR to 101.50 EUR); "
        "the policy allows 1.0 %."
    )


def test_an_override_lifts_it():
    result = check_price_drift(drift_context(now="150", override_price_drift=True))
    assert result.passed and result.detail == "Overridden for this proposal."


def test_a_proposal_stored_without_a_price_is_not_measured_but_a_missing_price_now_refuses():
    assert check_price_drift(drift_context(at=None)).passed
    result = check_price_drift(drift_context(now=None))
    assert (result.passed, result.code) == (False, "PRICE_DRIFT")


@pytest.mark.django_db
def test_an_execution_is_refused_on_drift_until_overridden_and_the_screen_shows_it(exchange):
    alice = PolicyFactory(user=UserFactory(username="alice")).user
    price = ReadonlyClient().ticker_price("BTC-EUR")
    # Proposed 3 % cheaper than now: the buy's price rose since.
    proposal = TradeProposalFactory(
        user=alice, approved=True, price_at_proposal=price / Decimal("1.03")
    )
    staff = UserFactory(username="olivia", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename="override_guards"))

    verdict = next(
        v
        for v in proposal_decision(user=staff, proposal=proposal).verdicts
        if v.rule == "price_drift"
    )
    assert (verdict.passed, verdict.code, verdict.label) == (False, "PRICE_DRIFT", "Price drift")

    outcome = execution_claim(proposal=proposal, actor_id=staff.pk)
    assert outcome.refused and outcome.refused_codes == ["PRICE_DRIFT"]
    assert not TradeExecution.objects.exists()
    refusal = ProposalEvent.objects.get(kind=ProposalEvent.Kind.PREFLIGHT_FAILED)
    assert refusal.data["failed_codes"] == ["PRICE_DRIFT"]

    proposal_override_set(
        proposal=proposal,
        actor=staff,
        cooldown=False,
        anti_flip=False,
        price_drift=True,
        reason="The move is the news we trade on",
    )
    override = ProposalEvent.objects.get(kind=ProposalEvent.Kind.OVERRIDE_SET)
    assert override.actor == staff and override.data["price_drift"] is True
    outcome = execution_claim(proposal=proposal, actor_id=staff.pk)
    assert not outcome.refused and outcome.execution.status == TradeExecution.Status.CLAIMED
