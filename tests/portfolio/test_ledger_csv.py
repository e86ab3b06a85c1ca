"""GET /api/v1/ledger.csv?year=: every fill of the year from our own ledger, nothing else."""

from datetime import UTC, datetime

import pytest

from tests.api.test_proposals_api import client_for
from tests.factories import UserFactory
from tests.portfolio.conftest import history

pytestmark = pytest.mark.django_db

HEADER = (
    "time,market,side,quantity,price,amount_eur,fee_eur,fee,fee_currency,execution_id,"
    "exchange_order_id"
)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_csv_has_exactly_the_fills_of_the_year_in_time_order():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    history(alice, "BTC-EUR", "buy", "0.01", "50000", "1.25", at(2025, 12, 31, 23, 59, 59))
    late = history(
        alice, "ETH-EUR", "sell", "0.5", "2500", "3.125", at(2026, 6, 1, 12, 0), order_id="o-2"
    )
    first = history(
        alice,
        "ETH-EUR",
        "buy",
        "1",
        "2000",
        "0.001",
        at(2026, 1, 1),
        fee_currency="ETH",
        order_id="o-1",
    )
    history(alice, "BTC-EUR", "buy", "0.01", "50000", "1.25", at(2027, 1, 1))
    history(bob, "BTC-EUR", "buy", "0.5", "50000", "60", at(2026, 3, 1))

    response = client_for(alice).get("/api/v1/ledger.csv", {"year": "2026"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert 'filename="ledger-alice-2026.csv"' in response["Content-Disposition"]
    assert response.content.decode().split("\r\n") == [
        HEADER,
        f"2026-01-01T00:00:00+00:00,ETH-EUR,buy,1,2000,2000,2,0.001,ETH,{first.execution_id},o-1",
        f"2026-06-01T12:00:00+00:00,ETH-EUR,sell,0.5,2500,1250,3.125,3.125,EUR,{late.execution_id},o-2",
        "",
    ]


def test_the_csv_answers_to_accept_text_csv_and_defaults_to_this_year():
    alice = UserFactory(username="alice")
    history(alice, "BTC-EUR", "buy", "0.01", "50000", "1.25", datetime.now(UTC))

    response = client_for(alice).get("/api/v1/ledger.csv", HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert (
        lines[0] == HEADER and len(lines) == 2 and ",BTC-EUR,buy,0.01,50000,500,1.25," in lines[1]
    )


@pytest.mark.parametrize("year", ["abc", "1999", "3000", "20 26", "٢٠٢٦", "-2026"])
def test_a_bad_year_is_a_400_with_a_stable_code(year):
    response = client_for(UserFactory()).get(
        "/api/v1/ledger.csv", {"year": year}, HTTP_ACCEPT="text/csv"
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "LEDGER_YEAR_INVALID" and body["extra"]["field"] == "year"
