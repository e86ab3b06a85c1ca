"""Scoring against hand-computed cases, on PostgreSQL, with the simulator serving candles
whose closes are pinned at the minutes that matter."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from evaluation.models import ProposalOutcome
from evaluation.scoring import minute_of, minute_start, proposals_score
from tests.evaluation.conftest import CountingClient, pin, proposal_at
from tests.factories import AdvisorDecisionFactory, UserFactory
from trading.models import TradeProposal

pytestmark = pytest.mark.django_db


def outcomes(proposal) -> dict[int, ProposalOutcome]:
    return {o.horizon_hours: o for o in ProposalOutcome.objects.filter(proposal=proposal)}


def test_a_buy_is_scored_at_every_passed_horizon_after_the_fee_in_and_out(market):
    proposal = proposal_at(73, market="ETH-EUR", side="buy", price_at_proposal=Decimal("3000"))
    pin(market, "ETH-EUR", proposal, {1: "2970", 4: "3000", 24: "3060", 72: "3300"})

    run = proposals_score()

    scored = outcomes(proposal)
    assert run.written == 4 and run.waiting == 0
    # (price − 3000) / 3000 − 2 × 0.0025
    assert scored[1].net_return == Decimal("-0.015")
    assert scored[4].net_return == Decimal("-0.005")
    assert scored[24].net_return == Decimal("0.015")
    assert scored[72].net_return == Decimal("0.095")
    assert [scored[h].hit for h in (1, 4, 24, 72)] == [False, False, True, True]
    assert scored[24].price == Decimal("3060") and scored[24].entry_price == Decimal("3000")
    assert scored[24].candle_at == minute_start(
        minute_of(proposal.created_at + timedelta(hours=24))
    )
    assert scored[24].user_id == proposal.user_id


def test_a_sell_earns_when_the_price_falls_and_loses_when_it_rises(market):
    proposal = proposal_at(5, market="SOL-EUR", side="sell", price_at_proposal=Decimal("150"))
    pin(market, "SOL-EUR", proposal, {1: "147", 4: "156"})

    proposals_score()

    scored = outcomes(proposal)
    # −(147 − 150) / 150 − 0.005 = 0.02 − 0.005; −(156 − 150) / 150 − 0.005 = −0.04 − 0.005
    assert scored[1].net_return == Decimal("0.015") and scored[1].hit
    assert scored[4].net_return == Decimal("-0.045") and not scored[4].hit
    assert set(scored) == {1, 4}  # 24 and 72 hours have not passed


def test_a_proposal_whose_horizon_has_not_passed_waits_and_is_scored_later(market):
    recent = proposal_at(0.5, market="BTC-EUR", price_at_proposal=Decimal("60000"))
    # Its hour ends a minute from now: that candle cannot have closed while the test runs.
    nearly = proposal_at(1 - 1 / 60, market="BTC-EUR", price_at_proposal=Decimal("60000"))

    proposals_score()

    assert outcomes(recent) == {}
    assert outcomes(nearly) == {}
    TradeProposal.objects.filter(pk=recent.pk).update(
        created_at=recent.created_at - timedelta(minutes=45)
    )
    proposals_score()
    assert set(outcomes(recent)) == {1}


def test_whatever_became_of_the_proposal_it_is_scored(market):
    statuses = ["PENDING", "APPROVED", "REJECTED", "EXPIRED", "EXECUTED", "FAILED"]
    proposals = [
        proposal_at(2, status=status, price_at_proposal=Decimal("60000"), decided_at=None)
        if status in ("PENDING", "EXPIRED")
        else proposal_at(2, status=status, approved=True, price_at_proposal=Decimal("60000"))
        for status in statuses
    ]

    proposals_score()

    assert ProposalOutcome.objects.filter(proposal__in=proposals, horizon_hours=1).count() == 6


def test_a_second_run_writes_nothing_again(market):
    proposal_at(25, price_at_proposal=Decimal("60000"))
    first = proposals_score()
    second = proposals_score()
    assert (first.written, second.written, second.already_there) == (3, 0, 0)
    assert ProposalOutcome.objects.count() == 3


def test_one_candle_read_serves_every_proposal_of_a_market_in_the_window(market):
    user = UserFactory()
    for hours_ago in (2, 3, 4.5, 6, 8):
        proposal_at(hours_ago, user=user, market="ETH-EUR", price_at_proposal=Decimal("3000"))
    client = CountingClient()

    run = proposals_score(client=client)

    # 5 proposals × their passed horizons (1 h for all, 4 h for three), all within 1440
    # minutes: one read for ETH-EUR and one for the BTC-EUR benchmark.
    assert run.written == 8
    assert client.candle_reads == {"ETH-EUR": 1, "BTC-EUR": 1}


def test_without_a_price_read_at_creation_the_entry_is_the_candle_of_that_minute(market):
    proposal = proposal_at(2, market="ETH-EUR", price_at_proposal=None)
    pin(market, "ETH-EUR", proposal, {0: "2000", 1: "2100"})

    proposals_score()

    scored = outcomes(proposal)[1]
    assert scored.entry_price == Decimal("2000")
    assert scored.net_return == Decimal("0.045")  # 100 / 2000 − 0.005


def test_the_baselines_ride_along_buy_and_hold_btc_and_the_offline_shadow(market):
    proposal = proposal_at(2, market="ETH-EUR", side="sell", price_at_proposal=Decimal("3000"))
    # The stored snapshot: ETH fell 3% on calm hours, so the offline rules sell ETH (score
    # 0.03 / 0.002 = 15 → confidence 75) from the snapshot's last price, 3000.
    AdvisorDecisionFactory(
        user=proposal.user,
        proposal=proposal,
        decision="propose",
        input={
            "markets": {
                "ETH-EUR": {"last": "3000", "change_24h": "-0.03", "volatility_1h": "0.002"},
                "SOL-EUR": {"last": "150", "change_24h": "0.001", "volatility_1h": "0.002"},
            },
            "limits": {"min_order_eur": "10.00"},
            "track_record": [],
        },
    )
    pin(market, "ETH-EUR", proposal, {1: "2940"})
    pin(market, "BTC-EUR", proposal, {0: "60000", 1: "60600"})

    proposals_score()

    scored = outcomes(proposal)[1]
    assert scored.net_return == Decimal("0.015")  # 60 / 3000 − 0.005
    assert scored.btc_net_return == Decimal("0.005")  # 600 / 60000 − 0.005
    assert (scored.shadow_market, scored.shadow_side, scored.shadow_confidence) == (
        "ETH-EUR",
        "sell",
        75,
    )
    assert scored.shadow_net_return == Decimal("0.015")


def test_the_command_reports_what_it_wrote(market):
    proposal_at(2, price_at_proposal=Decimal("60000"))
    out = StringIO()
    call_command("score_proposals", stdout=out)
    assert "written: 1  already there: 0  waiting for a candle: 0" in out.getvalue()
