"""GET /api/v1/positions/ on PostgreSQL, valued by the simulator over real HTTP, checked
against figures computed by hand (see test_ledger.py for the arithmetic)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api.test_proposals_api import client_for
from tests.factories import PolicyFactory, UserFactory
from tests.portfolio.conftest import history

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def alice():
    return PolicyFactory(user=UserFactory(username="alice")).user


def alices_fills(alice):
    history(alice, "BTC-EUR", "buy", "0.01", "50000", "1.25", T0)
    history(alice, "BTC-EUR", "buy", "0.02", "40000", "2.00", T0 + timedelta(hours=1))
    history(alice, "BTC-EUR", "sell", "0.015", "60000", "2.25", T0 + timedelta(hours=2))
    # The buy's fee was taken in ETH: 0.999 ETH held for 2000 EUR.
    history(alice, "ETH-EUR", "buy", "1", "2000", "0.001", T0, fee_currency="ETH")
    history(alice, "ETH-EUR", "sell", "0.5", "2500", "3.125", T0 + timedelta(hours=3))


def test_positions_by_average_cost_valued_at_the_last_price(alice, priced):
    alices_fills(alice)

    response = client_for(alice).get("/api/v1/positions/")

    assert response.status_code == 200, response.content
    body = response.json()
    btc, eth = body["positions"]
    assert btc == {
        "asset": "BTC",
        "market": "BTC-EUR",
        "quantity": "0.01500000",
        "average_cost_eur": "43441.66666667",  # 1303.25 / 0.03
        "cost_eur": "651.63",  # 651.625
        "price_eur": "55000.00",
        "value_eur": "825.00",
        "unrealized_pnl_eur": "173.38",  # 825 - 651.625
        "realized_pnl_eur": "246.13",  # 900 - 2.25 - 651.625
        "fees_eur": "5.50",
        "fills": 3,
        "unmatched_quantity": "0.00000000",
        "unmatched_proceeds_eur": "0.00",
        "flags": [],
        "valuation_error": None,
    }
    assert {k: eth[k] for k in eth if k.endswith("_eur") or k == "quantity"} == {
        "quantity": "0.49900000",
        "average_cost_eur": "2002.002002",  # 998.998999 / 0.499, at most 8 decimals
        "cost_eur": "999.00",  # 998.998999
        "price_eur": "2400.00",
        "value_eur": "1197.60",
        "unrealized_pnl_eur": "198.60",
        "realized_pnl_eur": "245.87",  # 1250 - 3.125 - 1001.001001
        "fees_eur": "5.13",  # 0.001 ETH x 2000 + 3.125
        "unmatched_proceeds_eur": "0.00",
    }
    assert body["totals"] == {
        "cost_eur": "1650.62",
        "value_eur": "2022.60",
        "unrealized_pnl_eur": "371.98",
        "realized_pnl_eur": "492.00",
        "fees_eur": "10.63",
        "unpriced": [],
    }


def test_a_price_that_cannot_be_read_is_a_null_value_with_its_reason(alice, priced):
    history(alice, "BTC-EUR", "buy", "0.01", "50000", "1.25", T0)
    history(alice, "ZQX-EUR", "buy", "10", "2", "0.05", T0)  # the exchange has no such market

    response = client_for(alice).get("/api/v1/positions/")

    assert response.status_code == 200, response.content
    body = response.json()
    btc, zqx = body["positions"]
    assert btc["value_eur"] == "550.00"
    assert (zqx["value_eur"], zqx["unrealized_pnl_eur"], zqx["price_eur"]) == (None, None, None)
    assert zqx["valuation_error"]["code"] == "PRICE_UNAVAILABLE"
    assert "ZQX-EUR" in zqx["valuation_error"]["message"]
    assert zqx["cost_eur"] == "20.05" and zqx["quantity"] == "10"  # no rules: as held
    assert body["totals"]["value_eur"] is None and body["totals"]["unrealized_pnl_eur"] is None
    assert body["totals"]["cost_eur"] == "521.30"
    assert body["totals"]["unpriced"] == [{"asset": "ZQX", "code": "PRICE_UNAVAILABLE"}]


def test_an_unreachable_exchange_is_no_500(alice, settings, db):
    cache.clear()  # no price read earlier
    settings.BITVAVO_API_URL = "http://127.0.0.1:9/v2"  # nothing listens on the discard port
    history(alice, "BTC-EUR", "buy", "0.01", "50000", "1.25", T0)

    response = client_for(alice).get("/api/v1/positions/")

    assert response.status_code == 200
    [btc] = response.json()["positions"]
    assert btc["value_eur"] is None and btc["cost_eur"] == "501.25"
    assert btc["valuation_error"]["code"] == "PRICE_UNAVAILABLE"


def test_a_sell_beyond_the_holding_is_flagged_not_negative(alice, priced):
    history(alice, "BTC-EUR", "buy", "0.01", "50000", "1.25", T0)
    history(alice, "BTC-EUR", "sell", "0.02", "60000", "3", T0 + timedelta(hours=1))

    [btc] = client_for(alice).get("/api/v1/positions/").json()["positions"]

    assert btc["flags"] == ["OVERSOLD"]
    # Nothing held: no market read, quantities as they are.
    assert btc["quantity"] == "0" and btc["average_cost_eur"] is None
    assert btc["unmatched_quantity"] == "0.01"
    assert btc["unmatched_proceeds_eur"] == "598.50"  # half of 1200 - 3
    assert btc["realized_pnl_eur"] == "97.25"  # 598.50 - 501.25
    assert btc["value_eur"] == "0.00" and btc["valuation_error"] is None


def test_a_user_sees_only_their_own_positions(alice, priced):
    alices_fills(alice)
    bob = PolicyFactory(user=UserFactory(username="bob")).user
    history(bob, "ETH-EUR", "buy", "2", "2000", "5", T0)

    mine = client_for(bob).get("/api/v1/positions/").json()

    assert [p["asset"] for p in mine["positions"]] == ["ETH"]
    assert mine["positions"][0]["quantity"] == "2.00000000"
    assert mine["totals"]["cost_eur"] == "4005.00"


def test_positions_read_the_fills_in_one_query_whatever_their_number(alice, priced):
    def queries(fills: int) -> tuple[int, int]:
        for n in range(fills):
            history(alice, "BTC-EUR", "buy", "0.001", "50000", "0.125", T0 + timedelta(minutes=n))
        client = client_for(alice)
        client.get("/api/v1/positions/")  # prices cached, token known: the same work each time
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/positions/").status_code == 200
        sqls = [q["sql"] for q in captured.captured_queries]
        return len(sqls), sum("trade_history" in sql for sql in sqls)

    few = queries(2)
    many = queries(18)

    assert few == many
    assert few[1] == 1
