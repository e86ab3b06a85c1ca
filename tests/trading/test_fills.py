"""What a final order records: one history row per fill, the execution's final status and
filled amounts, partial and empty fills; the rules the database keeps about them. Orders
come from the simulator over real HTTP through the trade client."""

import uuid
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from exchange.fills import order_fills, order_is_final, order_reported_filled
from exchange.orders import TradeClient, order_wait_final
from tests.factories import TradeExecutionFactory, TradeHistoryFactory, TradeProposalFactory
from tests.trading.finishing import finish, send, submitting
from trading.fills import (
    COUNTED_EUR,
    ORDER_NOT_FILLED,
    OrderNotFinal,
    execution_fill_fields,
    history_rows_for,
)
from trading.models import TradeExecution, TradeHistory, TradeProposal

pytestmark = pytest.mark.django_db

Status = TradeExecution.Status


@pytest.fixture
def client(exchange):
    exchange.control.set_strict_signing(True)
    return TradeClient()


def recorded(execution):
    execution.refresh_from_db()
    rows = list(TradeHistory.objects.filter(execution=execution).order_by("id"))
    return execution, TradeProposal.objects.get(pk=execution.proposal_id), rows


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_half_filled_under_market_protection_is_a_partial_execution(
    client, exchange, side
):
    exchange.control.set_fill_mode("canceledMarketProtection", fraction="0.5", fills=2)
    execution = submitting(side)
    order = send(client, execution)
    assert finish(execution, order)

    execution, proposal, rows = recorded(execution)
    assert (execution.status, execution.exchange_status) == (
        Status.SUBMITTED,
        "canceledMarketProtection",
    )
    assert execution.partially_filled and proposal.partially_executed
    assert proposal.status == TradeProposal.Status.EXECUTED
    filled, filled_quote = order_reported_filled(order)
    assert execution.filled_amount == filled
    assert execution.filled_eur == filled_quote.quantize(Decimal("0.00000001"))
    assert execution.fee_eur == Decimal("0.025")
    # 10.00 of the 20.00 EUR traded, less dust: a buy paid its fee out of it, a sell out of
    # the proceeds.
    traded = execution.filled_eur + (execution.fee_eur if side == "buy" else 0)
    assert Decimal("9.99") < traded <= Decimal("10.00")
    assert execution.average_price == (filled_quote / filled).quantize(Decimal("1e-12"))
    assert [row.fill_id for row in rows] == [f["id"] for f in order["fills"]]
    assert sum(row.amount for row in rows) == execution.filled_amount
    assert sum(row.fee_eur for row in rows) == execution.fee_eur
    assert {row.fee_currency for row in rows} == {"EUR"} and {row.side for row in rows} == {side}


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_expired_order_with_nothing_filled_fails_without_history(client, exchange, side):
    exchange.control.set_fill_mode("expired")
    execution = submitting(side)
    assert finish(execution, send(client, execution))

    execution, proposal, rows = recorded(execution)
    assert (execution.status, execution.error_code) == (Status.FAILED, ORDER_NOT_FILLED)
    assert "expired" in execution.error_message and execution.exchange_status == "expired"
    assert (execution.filled_amount, execution.filled_eur, execution.fee_eur) == (0, 0, 0)
    assert execution.average_price is None and not execution.partially_filled
    assert proposal.status == TradeProposal.Status.FAILED and not proposal.partially_executed
    assert rows == []
    counted = TradeExecution.objects.filter(status__in=(Status.SUBMITTING, Status.SUBMITTED))
    assert not counted.exists(), "a failed execution counts for no cap, cooldown or anti-flip"


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_order_answered_new_records_its_fills_once_they_come(client, exchange, side):
    exchange.control.set_fill_mode(answer="new")
    execution = submitting(side)
    order = send(client, execution)
    with pytest.raises(OrderNotFinal) as caught:
        finish(execution, order)
    assert caught.value.extra == {"exchange_status": "new"}

    final = order_wait_final(client, order, seconds=5)
    assert finish(execution, final)

    execution, proposal, (row,) = recorded(execution)
    assert execution.status == Status.SUBMITTED and execution.exchange_status == "filled"
    assert not execution.partially_filled and not proposal.partially_executed
    assert execution.fee_eur == Decimal("0.05")
    traded = execution.filled_eur + (execution.fee_eur if side == "buy" else 0)
    assert Decimal("19.99") < traded <= Decimal("20.00")
    assert (row.amount, row.price, row.fee) == (
        final["fills"][0]["amount"],
        final["fills"][0]["price"],
        Decimal("0.05"),
    )
    assert row.amount_eur == execution.filled_eur and row.price == execution.average_price


def test_an_unsettled_fill_is_recorded_with_its_fee_later(client, exchange):
    exchange.control.set_fill_mode(answer="unsettled")
    execution = submitting()
    order = send(client, execution)
    with pytest.raises(OrderNotFinal):
        history_rows_for(execution, order_fills(order))
    with pytest.raises(OrderNotFinal):
        finish(execution, order)
    assert finish(execution, order_wait_final(client, order, seconds=5))
    execution, _, (row,) = recorded(execution)
    assert (row.fee, row.fee_eur, row.fee_currency) == (Decimal("0.05"), Decimal("0.05"), "EUR")


def test_a_reconcile_of_an_order_new_when_the_worker_died_writes_the_fills_once(client, exchange):
    exchange.control.set_fill_mode(answer="new", fills=3, status="canceledMarketProtection")
    execution = submitting()
    send(client, execution)  # the worker died before it recorded the answer

    # The reconciler: by client order id (the order closes at this lookup, and a closed
    # order may not be found that way), then in the market's order list.
    assert client.get_order(market="BTC-EUR", client_order_id=execution.client_order_id) is None
    (order,) = client.list_orders(market="BTC-EUR", start_ms=0, end_ms=2**42)
    assert order_is_final(order) and order["clientOrderId"] == str(execution.client_order_id)
    assert finish(execution, order)
    assert not finish(execution, order), "a second reconcile finds nothing to finish"

    execution, proposal, rows = recorded(execution)
    assert len(rows) == 3 and execution.partially_filled and proposal.partially_executed
    total = TradeHistory.objects.filter(execution=execution).aggregate(n=Sum("amount"))["n"]
    assert total == execution.filled_amount == order_reported_filled(order)[0]
    with pytest.raises(IntegrityError, match="trade_history_one_row_per_fill"):
        TradeHistory.objects.bulk_create(history_rows_for(execution, order_fills(order))[:1])


def test_a_fee_in_the_base_asset_is_recorded_in_eur(client, exchange):
    exchange.control.set_fill_mode(fee_currency="base")
    execution = submitting()
    assert finish(execution, order := send(client, execution))
    execution, _, (row,) = recorded(execution)
    fill = order["fills"][0]
    assert (row.fee, row.fee_currency) == (fill["fee"], "BTC")
    assert row.fee_eur == (fill["fee"] * fill["price"]).quantize(Decimal("1e-8"))
    assert execution.fee_eur == row.fee_eur


def test_a_fee_in_another_currency_is_recorded_without_a_guess(client, exchange):
    exchange.control.set_fill_mode(fee_currency="VAVO")
    execution = submitting()
    assert finish(execution, send(client, execution))
    execution, _, (row,) = recorded(execution)
    assert (row.fee_currency, row.fee_eur, execution.fee_eur) == ("VAVO", None, None)
    assert execution.status == Status.SUBMITTED and row.fee > 0


# --- the rules of the database ----------------------------------------------------------------


@contextmanager
def constraint_violated(name):
    with pytest.raises(IntegrityError, match=name), transaction.atomic():
        yield


FILLED = {"exchange_status": "filled", "filled_amount": Decimal("0.0003"), "fee_eur": 0}


def test_a_partial_execution_must_be_submitted_and_below_the_amount_asked():
    with constraint_violated("trade_executions_partial_below_asked"):
        TradeExecutionFactory(partially_filled=True, filled_eur=Decimal("5"), **FILLED)
    with constraint_violated("trade_executions_partial_below_asked"):
        submitted_with(partially_filled=True, filled_eur=Decimal("25.00"))
    assert submitted_with(partially_filled=True, filled_eur=Decimal("12.5")).pk


def submitted_with(**fields):
    return TradeExecutionFactory(
        status=Status.SUBMITTED,
        exchange_order_id=str(uuid.uuid4()),
        submitting_at=timezone.now(),
        **{**FILLED, **fields},
    )


def test_a_submitted_execution_with_a_final_order_filled_something():
    with constraint_violated("trade_executions_submitted_filled"):
        submitted_with(filled_amount=Decimal("0"), filled_eur=Decimal("0"))
    assert submitted_with(exchange_status="", filled_amount=None, fee_eur=None).pk, "legacy"


def test_fills_are_recorded_whole_or_not_at_all():
    with constraint_violated("trade_executions_fills_recorded_whole"):
        TradeExecutionFactory(exchange_status="filled")
    with constraint_violated("trade_executions_fills_recorded_whole"):
        TradeExecutionFactory(filled_amount=Decimal("1"), filled_eur=Decimal("1"))
    with constraint_violated("trade_executions_fills_recorded_whole"):
        submitted_with(filled_eur=Decimal("-1"))


def test_only_an_executed_proposal_is_partly_executed():
    with constraint_violated("trade_proposals_partial_is_executed"):
        TradeProposalFactory(approved=True, partially_executed=True)


def test_a_history_fee_in_eur_is_not_negative():
    with constraint_violated("trade_history_fee_eur_not_negative"):
        TradeHistoryFactory(fee_eur=Decimal("-0.01"))


def test_the_rows_written_before_fills_were_kept_stay_valid():
    row = TradeHistoryFactory()
    assert (row.fill_id, row.fee_currency, row.fee_eur) == ("", "", None)


def test_an_execution_counts_what_was_filled_once_final_and_all_of_it_while_open():
    open_one = submitting(amount="20.00")
    partial = submitted_with(
        amount_eur=Decimal("20.00"),
        partially_filled=True,
        filled_eur=Decimal("9.975"),
        fee_eur=Decimal("0.025"),
    )
    unconverted = submitted_with(
        amount_eur=Decimal("30.00"), filled_eur=Decimal("29.9"), fee_eur=None
    )
    counted = dict(
        TradeExecution.objects.annotate(counted=COUNTED_EUR).values_list("pk", "counted")
    )
    assert counted == {
        open_one.pk: Decimal("20.00"),
        partial.pk: Decimal("10.00"),
        unconverted.pk: Decimal("30.00"),
    }


def test_finish_refuses_an_order_that_is_not_final():
    for order in ({"status": "new", "fills": []}, {"fills": []}, {"status": "partiallyFilled"}):
        with pytest.raises(OrderNotFinal) as caught:
            execution_fill_fields(order, [])
        assert caught.value.code == "ORDER_NOT_FINAL"
