"""The scorecard against a hand-computed case: four of alice's proposals scored at 24 h."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from evaluation.selectors import scorecard_get
from tests.api.test_proposals_api import client_for
from tests.factories import (
    AdvisorDecisionFactory,
    ProposalOutcomeFactory,
    TradeProposalFactory,
    UserFactory,
    login_verified,
)

pytestmark = pytest.mark.django_db

D = Decimal


def scored(user, *, confidence, market, status, net, btc=None, decision=None, shadow=None):
    decided = status in ("APPROVED", "EXECUTED", "REJECTED")
    proposal = TradeProposalFactory(
        user=user,
        confidence=confidence,
        market=market,
        status=status,
        decided_at=timezone.now() if decided else None,
        source="scan" if decision else "api",
    )
    if decision:
        AdvisorDecisionFactory(
            user=user, proposal=proposal, decision="propose", advisor=decision[0], model=decision[1]
        )
    shadow_fields = {}
    if shadow:
        shadow_fields = {"shadow_net_return": D(shadow[0]), "shadow_confidence": shadow[1]}
    ProposalOutcomeFactory(
        proposal=proposal,
        horizon_hours=24,
        net_return=D(net),
        hit=D(net) > 0,
        btc_net_return=None if btc is None else D(btc),
        **shadow_fields,
    )
    return proposal


@pytest.fixture
def alice():
    alice = UserFactory(username="alice")
    llm = ("llm", "m-a")
    scored(
        alice,
        confidence=75,
        market="BTC-EUR",
        status="APPROVED",
        net="0.02",
        btc="0.01",
        decision=llm,
        shadow=("0.02", 50),
    )
    scored(
        alice,
        confidence=75,
        market="BTC-EUR",
        status="EXECUTED",
        net="-0.01",
        btc="-0.02",
        decision=llm,
    )
    scored(
        alice,
        confidence=25,
        market="ETH-EUR",
        status="REJECTED",
        net="0.03",
        decision=("offline", "offline-momentum-v1"),
    )
    scored(alice, confidence=50, market="ETH-EUR", status="PENDING", net="-0.005", btc="0.004")
    # Not hers, or not this horizon: never counted.
    scored(UserFactory(), confidence=100, market="SOL-EUR", status="PENDING", net="0.5")
    other = TradeProposalFactory(user=alice, confidence=100)
    ProposalOutcomeFactory(proposal=other, horizon_hours=4, net_return=D("0.9"), hit=True)
    return alice


def stats(count, hits, rate, mean, brier):
    return {
        "count": count,
        "hits": hits,
        "hit_rate": None if rate is None else D(rate),
        "mean_net_return": None if mean is None else D(mean),
        "brier": None if brier is None else D(brier),
    }


def test_the_scorecard_by_hand(alice):
    card = scorecard_get(user=alice, horizon_hours=24)

    # Brier: ((.75−1)² + (.75−0)² + (.25−1)² + (.5−0)²) / 4 = 1.4375 / 4 = 0.359375
    assert card["overall"] == stats(4, 2, "0.5", "0.00875", "0.3594")
    assert card["by_confidence"] == [
        {"confidence": 0, **stats(0, 0, None, None, None)},
        {"confidence": 25, **stats(1, 1, "1", "0.03", "0.5625")},
        {"confidence": 50, **stats(1, 0, "0", "-0.005", "0.25")},
        {"confidence": 75, **stats(2, 1, "0.5", "0.005", "0.3125")},
        {"confidence": 100, **stats(0, 0, None, None, None)},
    ]
    assert card["by_market"] == [
        {"market": "BTC-EUR", **stats(2, 1, "0.5", "0.005", "0.3125")},
        # (.5625 + .25) / 2 = 0.40625, to four places half to even.
        {"market": "ETH-EUR", **stats(2, 1, "0.5", "0.0125", "0.4062")},
    ]
    assert [(r["advisor"], r["model"], r["count"]) for r in card["by_advisor"]] == [
        ("api", "", 1),
        ("llm", "m-a", 2),
        ("offline", "offline-momentum-v1", 1),
    ]
    human = card["human"]
    assert human["approved"]["count"] == 2 and human["approved"]["mean_net_return"] == D("0.005")
    assert human["rejected"]["count"] == 1 and human["rejected"]["mean_net_return"] == D("0.03")
    assert human["undecided"]["count"] == 1
    # Here the human rejected the better proposal: approving added −2.5 points.
    assert human["approved_minus_rejected"] == D("-0.025")
    baselines = {row.pop("name"): row for row in card["baselines"]}
    assert baselines["no_trade"] == stats(4, 0, "0", "0", None)
    assert baselines["buy_and_hold_btc_eur"] == stats(3, 2, "0.6667", "-0.002", None)
    assert baselines["offline_shadow"] == stats(1, 1, "1", "0.02", "0.25")


def test_the_api_serves_the_users_own_scorecard(alice):
    response = client_for(alice).get(reverse("scorecard"), {"horizon": 24})

    assert response.status_code == 200
    body = response.json()
    assert body["horizon_hours"] == 24
    assert body["overall"] == {
        "count": 4,
        "hits": 2,
        "hit_rate": "0.5000",
        "mean_net_return": "0.008750",
        "brier": "0.3594",
    }
    assert body["human"]["approved_minus_rejected"] == "-0.025000"
    assert "SOL-EUR" not in response.content.decode()


def test_the_default_horizon_is_24_hours_and_another_is_refused_with_a_code(alice):
    client = client_for(alice)
    assert client.get(reverse("scorecard")).json()["horizon_hours"] == 24
    assert client.get(reverse("scorecard"), {"horizon": 4}).json()["overall"]["count"] == 1

    response = client.get(reverse("scorecard"), {"horizon": 5})

    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "extra"}


def test_the_console_page_draws_the_calibration_of_every_users_proposals(client, alice):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_proposaloutcome", "view_tradeproposal"])
    )
    login_verified(client, staff)

    page = client.get(reverse("admin-scorecard"), {"horizon": 24}).content.decode()

    start = page.index('<svg id="calibration"')
    svg = page[start : page.index("</svg>", start)]
    # Four confidence levels hold scored proposals: alice's 25, 50 and 75, and 100 (another
    # user's).
    assert svg.count("<circle") == 4
    assert "75%: 1/2" in svg and "100%: 1/1" in svg
    assert "SOL-EUR" in page  # staff see every user's proposals
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
