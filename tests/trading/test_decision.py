"""The decision screen's facts (trading.decision.proposal_decision) and its admin page,
against the simulator over HTTP: prices and candles, the holding from the ledger, what the
advisor saw and its record, every verdict, the actions the viewer may take, the buttons
going through the services, the admin log, and the state the page polls."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from exchange.readonly import ReadonlyClient
from tests.factories import (
    AdvisorDecisionFactory,
    PolicyFactory,
    ProposalOutcomeFactory,
    TradeHistoryFactory,
    TradeProposalFactory,
    UserFactory,
    login_verified,
)
from trading.admin import TradeProposalAdmin
from trading.decision import CHART_CANDLES, decision_state, proposal_decision
from trading.models import TradeExecution, TradeProposal
from trading.preflight import preflight_preview

pytestmark = pytest.mark.django_db


def staff(*codenames, username="olivia"):
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_tradeproposal", *codenames])
    )
    return user


@pytest.fixture
def alice():
    return PolicyFactory(user=UserFactory(username="alice")).user


def bought_two_days_ago(user, amount="0.0005"):
    at = timezone.now() - timedelta(days=2)
    return TradeHistoryFactory(
        execution__proposal__user=user,
        execution__claimed_at=at,
        executed_at=at,
        amount=Decimal(amount),
    )


def test_the_decision_holds_the_prices_the_fill_the_holding_and_the_advisor(exchange, alice):
    bought_two_days_ago(alice)
    price = ReadonlyClient().ticker_price("BTC-EUR")
    proposal = TradeProposalFactory(user=alice, price_at_proposal=price / Decimal("1.02"))
    AdvisorDecisionFactory(
        user=alice,
        proposal=proposal,
        decision="propose",
        input={"markets": {"BTC-EUR": {"last": "61000", "change_24h": "0.01"}}, "limits": {}},
        stop_loss=price * Decimal("0.98"),
    )
    for net in ("0.01", "-0.02"):  # one hit, one miss on BTC-EUR at confidence 75
        ProposalOutcomeFactory(proposal=TradeProposalFactory(user=alice), net_return=Decimal(net))

    decision = proposal_decision(user=staff("approve_proposal"), proposal=proposal)

    assert len(decision.candles) == CHART_CANDLES and decision.chart_error == ""
    times = [c.timestamp_ms for c in decision.candles]
    assert times == sorted(times)  # oldest first, as the chart draws them
    assert decision.price_now == price
    assert decision.drift.quantize(Decimal("0.0001")) == Decimal("0.0200")  # a buy, price rose
    assert decision.drift_against is True
    assert decision.fill.fee_eur == Decimal("0.0625")
    assert decision.at_risk_eur == Decimal("25.00")
    assert decision.risk_to_stop_eur is not None and decision.risk_to_stop_eur > 0
    holding = decision.holding
    assert (holding.asset, holding.quantity) == ("BTC", Decimal("0.0005"))
    assert holding.quantity_after == Decimal("0.0005") + decision.fill.quantity
    assert holding.value_eur == Decimal("0.0005") * price
    advisor = decision.advisor
    assert (advisor.model, advisor.cost_eur) == ("gpt-4o-mini", Decimal("0.00006400"))
    assert advisor.market_input == {"last": "61000", "change_24h": "0.01"}
    on_market, at_confidence, overall = advisor.records
    assert (on_market.count, on_market.hits) == (2, 1)
    assert at_confidence.label == "at confidence 75" and at_confidence.count == 2
    assert overall.count == 2


def test_every_rule_of_preflight_is_a_verdict_and_a_pending_one_is_previewed_as_approved(
    exchange, alice
):
    proposal = TradeProposalFactory(user=alice)
    decision = proposal_decision(user=staff(), proposal=proposal)
    expected = preflight_preview(proposal=proposal, as_approved=True)
    # Rendered from the rule list, whatever rules it holds.
    assert [v.rule for v in decision.verdicts] == [c.rule for c in expected.checks]
    assert decision.preflight_if_approved and decision.preflight.passed
    assert all(v.label and v.text for v in decision.verdicts)


def test_the_actions_follow_the_state_and_the_viewers_permissions(exchange, alice):
    pending = TradeProposalFactory(user=alice)
    approved = TradeProposalFactory(user=alice, approved=True)
    rejected = TradeProposalFactory(
        user=alice, status=TradeProposal.Status.REJECTED, decided_at=timezone.now()
    )
    everything = staff("approve_proposal", "execute_proposal", "override_guards")
    viewer = staff(username="vera")

    actions = proposal_decision(user=everything, proposal=pending).actions
    assert (actions.approve, actions.reject, actions.execute) == (True, True, False)
    actions = proposal_decision(user=everything, proposal=approved).actions
    assert (actions.approve, actions.reject, actions.execute) == (False, True, True)
    actions = proposal_decision(user=everything, proposal=rejected).actions
    assert not (actions.approve or actions.reject or actions.execute or actions.override)
    actions = proposal_decision(user=viewer, proposal=pending).actions
    assert not (actions.approve or actions.reject or actions.execute or actions.override)


def test_a_market_the_exchange_cannot_read_leaves_the_chart_and_price_unavailable(exchange, alice):
    proposal = TradeProposalFactory(user=alice, market="NOPE-EUR", price_at_proposal=Decimal(1))
    decision = proposal_decision(user=staff(), proposal=proposal)
    assert decision.candles == () and decision.chart_error
    assert decision.price_now is None and decision.price_error
    assert decision.drift is None and decision.fill is None
    assert decision.holding.quantity_after is None


def test_the_page_shows_the_screen_and_its_buttons_and_no_save(client, exchange, alice):
    proposal = TradeProposalFactory(user=alice, price_at_proposal=Decimal("50000"))
    login_verified(client, staff("approve_proposal", "execute_proposal"))
    response = client.get(reverse("admin:trading_tradeproposal_change", args=[proposal.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    for marker in (
        'id="decision-chart"',
        'id="decision-chart-data"',
        "lightweight-charts-5.2.1.standalone.production.js",
        "Preflight if approved now",
        'id="decision-approve"',
        'id="decision-reject"',
        "on the shared exchange account",
    ):
        assert marker in html, marker
    assert 'id="decision-execute"' not in html  # not approved yet
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    # Nothing on the page is saved as a form: a POST to it changes nothing.
    before = TradeProposal.objects.get(pk=proposal.pk).updated_at
    url = reverse("admin:trading_tradeproposal_change", args=[proposal.pk])
    assert client.post(url, {"rationale": "changed"}).status_code == 403
    assert TradeProposal.objects.get(pk=proposal.pk).updated_at == before
    assert not LogEntry.objects.exists()


def test_the_buttons_go_through_the_services_and_the_admin_log(client, exchange, alice):
    proposal = TradeProposalFactory(user=alice)
    operator = staff("approve_proposal", "execute_proposal")
    login_verified(client, operator)
    page = reverse("admin:trading_tradeproposal_change", args=[proposal.pk])

    response = client.post(reverse("admin:trading_tradeproposal_approve", args=[proposal.pk]))
    assert response.status_code == 302 and response.url == page
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == ("APPROVED", operator)
    # A second approve is refused by the service, in words, and changes nothing.
    client.post(reverse("admin:trading_tradeproposal_approve", args=[proposal.pk]))
    messages = [str(m) for m in client.get(page).context["messages"]]
    assert any("PROPOSAL_STATE_CONFLICT" in m for m in messages)

    client.post(reverse("admin:trading_tradeproposal_execute", args=[proposal.pk]))
    execution = TradeExecution.objects.get(proposal=proposal)
    assert execution.status == TradeExecution.Status.CLAIMED
    log = list(LogEntry.objects.order_by("pk").values_list("user__username", "change_message"))
    assert log == [("olivia", "Approved"), ("olivia", f"Execution #{execution.pk} requested")]

    # Its own claim now counts against it: the screen shows what preflight said at the claim.
    decision = proposal_decision(user=operator, proposal=proposal)
    assert decision.preflight_heading == "Preflight when the execution was claimed"
    assert decision.preflight.passed and len(decision.verdicts) == len(
        execution.preflight_result["checks"]
    )
    assert not (decision.actions.reject or decision.actions.override)

    state = client.get(reverse("admin:trading_tradeproposal_state", args=[proposal.pk])).json()
    assert state["proposal_status"] == "APPROVED" and state["final"] is False
    assert state["execution"]["status"] == "CLAIMED"


def test_a_rejection_needs_a_reason(client, exchange, alice):
    proposal = TradeProposalFactory(user=alice)
    login_verified(client, staff("approve_proposal"))
    url = reverse("admin:trading_tradeproposal_reject", args=[proposal.pk])
    client.post(url, {"reason": "  "})
    proposal.refresh_from_db()
    assert proposal.status == "PENDING"
    client.post(url, {"reason": "Spread too wide"})
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decision_reason) == ("REJECTED", "Spread too wide")
    assert LogEntry.objects.get().change_message == "Rejected: Spread too wide"


def test_the_state_of_a_decided_proposal_is_final(exchange, alice):
    rejected = TradeProposalFactory(
        user=alice, status=TradeProposal.Status.REJECTED, decided_at=timezone.now()
    )
    assert decision_state(proposal=rejected) == {
        "proposal_status": "REJECTED",
        "execution": None,
        "final": True,
    }


def test_expires_in_shows_only_for_live_proposals(client, alice):
    TradeProposalFactory(user=alice)
    TradeProposalFactory(
        user=alice, status=TradeProposal.Status.REJECTED, decided_at=timezone.now()
    )
    shown = [
        TradeProposalAdmin.time_to_expiry(None, p) for p in TradeProposal.objects.order_by("pk")
    ]
    assert shown[0].endswith("m") and shown[1] == "-"
