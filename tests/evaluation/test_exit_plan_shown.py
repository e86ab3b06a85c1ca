"""The advisor's exit plan and invalidation are shown with the proposal in the console."""

from decimal import Decimal

import pytest
from django.urls import reverse

from tests.factories import (
    AdvisorDecisionFactory,
    TradeProposalFactory,
    UserFactory,
    login_verified,
)

pytestmark = pytest.mark.django_db


def test_the_proposal_page_and_the_decision_list_show_the_exit_plan(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    proposal = TradeProposalFactory(market="ETH-EUR")
    AdvisorDecisionFactory(
        user=proposal.user,
        proposal=proposal,
        decision="propose",
        stop_loss=Decimal("2900"),
        take_profit=Decimal("3300"),
        exit_horizon_hours=24,
        invalidation="A close below 2900.",
    )
    bare = TradeProposalFactory()
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))

    page = client.get(reverse("admin:trading_tradeproposal_change", args=[proposal.pk]))
    text = page.content.decode()

    assert "stop-loss 2900" in text and "take-profit 3300" in text
    assert "within hours: 24" in text and "invalid if: A close below 2900." in text
    other = client.get(reverse("admin:trading_tradeproposal_change", args=[bare.pk]))
    assert other.status_code == 200 and "stop-loss" not in other.content.decode()
    listing = client.get(reverse("admin:evaluation_advisordecision_changelist")).content.decode()
    assert "2900" in listing and "3300" in listing
