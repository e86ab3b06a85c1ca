"""The parts add up: per asset, every user's holding plus the unallocated funds equal the
exchange's balances (the simulator's, read with the read-only key), after a mixed run of
two users through the product; a trade made outside the product is a difference, shown by
oracle_report, the dashboard and /metrics."""

import io
import uuid
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from exchange.orders import TradeClient
from exchange.services import balances_refresh
from ops.report import flows_recount_differences, holdings_balances, market_price
from tests.factories import (
    PolicyFactory,
    TradeProposalFactory,
    UserFactory,
    holding_give,
    login_verified,
)
from tests.threads import run_in_parallel
from trading.models import AccountFlow, TradeExecution, TradeHistory
from trading.selectors import account_flows_get, holdings_get
from trading.send import execution_run

pytestmark = pytest.mark.django_db(transaction=True)

FREE = {"cooldown_minutes": 0, "anti_flip_minutes": 0, "max_trades_per_hour": 50}


def trade(user, market, side, amount):
    proposal = TradeProposalFactory(
        user=user, approved=True, market=market, side=side, amount_eur=Decimal(amount)
    )
    outcome = execution_run(proposal=proposal)
    assert outcome.execution is not None, outcome.refused_codes
    assert outcome.execution.status == TradeExecution.Status.SUBMITTED


def balances() -> dict:
    balances_refresh()  # as the scan worker does, with the read-only key
    return {line.asset: line for line in holdings_balances(price_of=market_price)}


@pytest.fixture
def mixed_run(exchange):
    alice = PolicyFactory(allocation_eur=Decimal("300"), **FREE).user
    bob = PolicyFactory(allocation_eur=Decimal("200"), **FREE).user
    trade(alice, "BTC-EUR", "buy", "80.00")
    trade(bob, "ETH-EUR", "buy", "60.00")
    trade(bob, "BTC-EUR", "buy", "40.00")
    trade(alice, "BTC-EUR", "sell", "30.00")
    trade(bob, "ETH-EUR", "sell", "20.00")
    return alice, bob


def test_two_users_holdings_plus_the_unallocated_rest_equal_the_exchange(mixed_run):
    alice, bob = mixed_run

    lines = balances()

    assert [line.alert for line in lines.values()] == ["", "", ""]
    btc, eth, eur = lines["BTC"], lines["ETH"], lines["EUR"]
    # The users' parts are their own holdings, from their own fills.
    held = {u: holdings_get(user=u) for u in (alice, bob)}
    assert btc.users == held[alice].quantity("BTC") + held[bob].quantity("BTC") > 0
    assert eth.users == held[bob].quantity("ETH") > 0
    # Unallocated: what was paid in (the simulator's start) less what users were given.
    assert (btc.unallocated, eth.unallocated) == (Decimal("0.5"), Decimal("5"))
    assert eur.unallocated == Decimal("10000") - Decimal("500")
    assert btc.difference == 0
    assert eth.difference == 0
    # A buy for an EUR amount leaves the exchange's rounding of the bought quantity (under a
    # cent per order), which the ledger's price x quantity does not see.
    assert abs(eur.difference) < Decimal("0.01")


def test_a_trade_outside_the_product_is_a_difference_and_an_alert(mixed_run, client):
    order = TradeClient().place_market_order(
        market="BTC-EUR", side="buy", client_order_id=uuid.uuid4(), amount_quote=Decimal("100")
    )

    lines = balances()

    btc, eur = lines["BTC"], lines["EUR"]
    assert btc.difference == Decimal(order["filledAmount"])
    assert btc.alert.startswith("HOLDINGS_DIFFER: the exchange holds +")
    assert eur.difference < Decimal("-99")
    assert eur.alert.startswith("HOLDINGS_DIFFER")
    assert lines["ETH"].alert == ""

    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("oracle_report", stdout=out)
    report = out.getvalue()
    assert "ALERT HOLDINGS_DIFFER: the exchange holds +" in report
    assert "ETH    users" in report

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
        for s in family.samples
    }
    assert samples[("oracle_holdings_alert", (("asset", "BTC"),))] == 1
    assert samples[("oracle_holdings_alert", (("asset", "ETH"),))] == 0
    assert samples[("oracle_holdings_difference", (("asset", "BTC"),))] == float(btc.difference)

    login_verified(client, UserFactory(is_staff=True, is_superuser=True))
    page = client.get("/admin/dashboard/").content.decode()
    assert "HOLDINGS_DIFFER: the exchange holds +" in page
    assert "ETH adds up" in page


@pytest.mark.sqlite
def test_the_kept_flows_equal_a_recount_from_every_fill(mixed_run):
    lines = balances()

    assert flows_recount_differences() == {}
    kept = account_flows_get()
    assert kept["BTC"] == lines["BTC"].users > 0  # every fill is older than the balances
    assert kept["ETH"] == lines["ETH"].users > 0

    out = io.StringIO()
    call_command("oracle_report", stdout=out)
    assert "kept sums less a recount:      none differ" in out.getvalue()


@pytest.mark.sqlite
def test_parallel_first_fills_of_an_asset_are_each_added_once(exchange):
    users = [PolicyFactory(allocation_eur=Decimal("100"), **FREE).user for _ in range(4)]
    proposals = [
        TradeProposalFactory(user=u, approved=True, market="BTC-EUR", amount_eur=Decimal("20"))
        for u in users
    ]
    assert not AccountFlow.objects.exists()

    outcomes = run_in_parallel(lambda p: execution_run(proposal=p), [(p,) for p in proposals])

    assert [o.execution.status for o in outcomes] == ["SUBMITTED"] * 4, outcomes
    assert len(exchange.control.orders()) == 4
    assert sorted(AccountFlow.objects.values_list("asset", flat=True)) == ["BTC", "EUR"]
    assert flows_recount_differences() == {}
    held = sum(holdings_get(user=u).quantity("BTC") for u in users)
    assert account_flows_get()["BTC"] == held > 0


def test_the_holdings_check_reads_the_kept_sums_not_the_history(exchange):
    user = PolicyFactory(allocation_eur=Decimal("300"), **FREE).user
    trade(user, "BTC-EUR", "buy", "20.00")
    balances_refresh()
    with CaptureQueriesContext(connection) as few:
        holdings_balances(price_of=market_price)
    old = [holding_give(user, quantity="0.001").pk for _ in range(30)]  # older than the balances
    with CaptureQueriesContext(connection) as many:
        lines = {line.asset: line for line in holdings_balances(price_of=market_price)}

    assert len(many) == len(few)
    # 30 fills the exchange's account never saw: a difference, from the kept sums.
    assert lines["BTC"].difference == Decimal("-0.030")

    # Rows removed behind the product's back: the pages still read the sums as kept, and
    # the report's recount from every fill says they no longer add up.
    TradeHistory.objects.filter(pk__in=old).delete()
    lines = {line.asset: line for line in holdings_balances(price_of=market_price)}
    assert lines["BTC"].difference == Decimal("-0.030")
    assert flows_recount_differences() == {"BTC": Decimal("0.030"), "EUR": Decimal("-1500")}
    with pytest.raises(CommandError, match="FLOWS_DIFFER: BTC, EUR"):
        call_command("oracle_report", stdout=io.StringIO())
