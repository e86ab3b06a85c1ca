"""oracle_report against the simulator over HTTP: orders at the exchange against executions
in the database; any orphan either way is listed and makes the command fail."""

import io
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from budget.errors import BudgetExhausted
from budget.services import budget_admit
from exchange.orders import TradeClient, order_wait_final
from tests.factories import PolicyFactory, TradeExecutionFactory, TradeProposalFactory
from trading.models import TradeExecution
from trading.reconcile import exchange_orders_between
from trading.send import execution_run

pytestmark = pytest.mark.django_db


def report(*args: str) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("oracle_report", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def line(output: str, label: str) -> str:
    (found,) = [row for row in output.splitlines() if row.strip().startswith(label)]
    return found.split(":", 1)[1].strip()


@pytest.fixture
def executed(exchange):
    """One proposal executed through the engine: one order, one SUBMITTED execution."""
    policy = PolicyFactory()
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    outcome = execution_run(proposal=proposal)
    assert outcome.execution.status == "SUBMITTED"
    return outcome.execution


def test_orders_and_executions_that_match_report_no_orphan(executed, exchange):
    admission = {
        "user_id": executed.user_id,
        "daily_limit": 1,
        "hourly_limit": 1,
        "model": "m",
        "reason": "scan",
        "tokens_estimate": 5,
    }
    budget_admit(**admission)
    with pytest.raises(BudgetExhausted):
        budget_admit(**admission)

    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())

    assert error is None, output
    assert line(output, "orders at the exchange") == "1"
    assert line(output, "executions in the database") == "SUBMITTED=1"
    assert line(output, "orders without an execution") == "0"
    assert line(output, "executions without an order") == "0"
    assert line(output, "calls counted").startswith("1 (")
    assert line(output, "refusals") == "DAILY_BUDGET_EXHAUSTED=1"
    assert "BTC-EUR" in line(output, "markets")
    assert output.rstrip().endswith("orphans: 0")


def test_an_order_placed_behind_the_products_back_is_an_orphan(executed, exchange):
    stray = TradeClient().place_market_order(
        market="BTC-EUR", side="buy", client_order_id=uuid.uuid4(), amount_quote=Decimal("15")
    )
    assert len(exchange.orders()) == 2

    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())

    assert error is not None and str(error).startswith("ORPHANS_FOUND: 1 order(s)")
    assert line(output, "orders at the exchange") == "2"
    assert line(output, "orders without an execution") == "1"
    (listed,) = [row for row in output.splitlines() if stray["orderId"] in row]
    assert "execution=none" in listed
    assert executed.exchange_order_id not in output.split("orders without an execution")[1]


def test_an_execution_whose_order_the_exchange_lacks_is_an_orphan(executed, exchange):
    ghost = TradeExecutionFactory(
        proposal=TradeProposalFactory(user=executed.user, approved=True),
        status="SUBMITTED",
        submitting_at=timezone.now(),
        exchange_order_id="no-such-order",
    )

    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())

    assert error is not None and "1 execution(s) without an order" in str(error)
    assert line(output, "executions without an order") == "1"
    assert f"execution #{ghost.pk} (proposal #{ghost.proposal_id})" in output


def test_the_range_limits_what_is_compared(executed, exchange):
    output, error = report(
        "--since", "2020-01-01", "--until", (timezone.now() - timedelta(hours=1)).isoformat()
    )
    assert error is None, output
    assert line(output, "orders at the exchange") == "0"
    assert line(output, "executions in the database") == "none"


def test_it_needs_the_trade_key_of_the_execute_role(exchange, monkeypatch):
    monkeypatch.setenv("ORACLE_ROLE", "web")
    output, error = report()
    assert error is not None and str(error).startswith("TRADE_CLIENT_WRONG_ROLE")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--since", "yesterday"], "DATE_INVALID"),
        (["--since", "2030-01-02", "--until", "2030-01-01"], "RANGE_INVALID"),
    ],
)
def test_a_bad_range_is_refused_with_a_code(args, code):
    with pytest.raises(CommandError, match=code):
        call_command("oracle_report", *args, stdout=io.StringIO())


def test_the_exchange_listing_pages_back_through_every_order(exchange):
    client = TradeClient()
    placed = {
        client.place_market_order(
            market=market, side="buy", client_order_id=uuid.uuid4(), amount_quote=Decimal("12")
        )["orderId"]
        for market in ("BTC-EUR", "BTC-EUR", "BTC-EUR", "BTC-EUR", "BTC-EUR", "ETH-EUR")
    }
    now = timezone.now()
    listed = exchange_orders_between(
        markets=["BTC-EUR", "ETH-EUR"],
        start=now - timedelta(minutes=5),
        end=now + timedelta(minutes=1),
        client=client,
        page=2,
    )
    assert sorted(order["orderId"] for order in listed) == sorted(placed)


@pytest.fixture
def finished(exchange):
    """A partial, an empty and a late-filled order, for a buy and a sell each, finished as
    the trade path records final orders."""
    from tests.trading.finishing import finish, send, submitting

    client = TradeClient()
    executions = []
    for side in ("buy", "sell"):
        for mode in (
            {"status": "canceledMarketProtection", "fills": 2},
            {"status": "expired"},
            {"answer": "new"},
        ):
            exchange.control.set_fill_mode(**mode)
            execution = submitting(side)
            order = order_wait_final(client, send(client, execution), seconds=5)
            assert finish(execution, order)
            executions.append(execution)
    return executions


def test_the_report_agrees_with_the_exchanges_filled_amounts(finished):
    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())

    assert error is None, output
    assert line(output, "orders at the exchange") == "6"
    assert line(output, "executions in the database") == "FAILED=2, SUBMITTED=4"
    assert line(output, "orders without an execution") == "0", "an expired order is no orphan"
    assert line(output, "filled differently") == "0"
    assert line(output, "orders not final yet") == "0"
    assert line(output, "finished without fills kept") == "0"


def test_a_recorded_fill_that_differs_from_the_exchange_is_listed(finished):
    partial = TradeExecution.objects.get(pk=finished[0].pk)
    recorded_eur = partial.filled_eur
    TradeExecution.objects.filter(pk=partial.pk).update(filled_eur=recorded_eur + 1)

    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())

    assert error is not None and str(error).startswith("FILLS_DIFFER: 1 execution(s)")
    assert line(output, "filled differently") == "1"
    (listed,) = [row for row in output.splitlines() if f"execution #{partial.pk} order" in row]
    exchange_part, recorded_part = listed.split(", recorded ")
    assert "exchange canceledMarketProtection" in exchange_part
    assert exchange_part.endswith(f"for {recorded_eur} EUR")
    assert recorded_part == (
        f"canceledMarketProtection {partial.filled_amount} for {recorded_eur + 1} EUR"
    )
    assert line(output, "orders without an execution") == "0"


def test_an_order_still_open_at_the_exchange_is_not_compared_yet(exchange):
    from tests.trading.finishing import send, submitting

    # Recorded as the trade path did before final orders decided: SUBMITTED at the answer.
    exchange.control.set_fill_mode(answer="new", settle_after_lookups=1000)
    execution = submitting()
    order = send(TradeClient(), execution)
    TradeExecution.objects.filter(pk=execution.pk).update(
        status="SUBMITTED", exchange_order_id=order["orderId"]
    )

    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())

    assert error is None, output
    assert line(output, "orders not final yet") == "1"
    assert line(output, "filled differently") == "0"


def test_an_execution_finished_before_fills_were_kept_is_counted_apart(executed, exchange):
    # As a row written before executions recorded the exchange's final order.
    TradeExecution.objects.filter(pk=executed.pk).update(
        exchange_status="", filled_amount=None, filled_eur=None, fee_eur=None, average_price=None
    )
    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())
    assert error is None, output
    assert line(output, "finished without fills kept") == "1"


def test_an_order_without_its_call_row_fails_the_report(executed, exchange):
    from exchange.call_log import call_log_connection
    from exchange.models import ExchangeCall

    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())
    assert error is None, output
    assert line(output, "orders without a call row") == "0"
    with call_log_connection() as alias:
        ExchangeCall.objects.using(alias).filter(method="POST").delete()

    output, error = report("--since", (timezone.now() - timedelta(hours=1)).isoformat())

    assert line(output, "orders without a call row") == "1"
    assert f"clientOrderId={executed.client_order_id}" in output
    assert str(error).startswith("CALLS_MISSING")
