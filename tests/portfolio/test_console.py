"""The console's portfolio page: a chosen user's positions and profit from our ledger, the
value history drawn inline, today's and this week's profit, and the ledger download."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission

from portfolio.console import PORTFOLIO_PERMISSIONS
from tests.factories import PortfolioSnapshotFactory, UserFactory, login_verified
from tests.portfolio.test_positions_api import alices_fills

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer():
    user = UserFactory(username="viewer", is_staff=True)
    codenames = [name.split(".")[1] for name in PORTFOLIO_PERMISSIONS]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_staff_see_the_chosen_users_positions_pnl_and_value_history(client, viewer, priced):
    alice = UserFactory(username="alice")
    alices_fills(alice)
    today = datetime.now(UTC).date()
    for days, value in ((3, "1900"), (2, None), (1, "2000")):  # a day without a price: a gap
        PortfolioSnapshotFactory(
            user=alice,
            day=today - timedelta(days=days),
            value_eur=value,
            unrealized_pnl_eur=None if value is None else "300",
            realized_pnl_eur="491.998999",
        )
    login_verified(client, viewer)

    page = client.get("/admin/portfolio/", {"user": alice.pk})

    assert page.status_code == 200
    text = page.content.decode()
    assert "Portfolio of alice" in text
    assert "<td>BTC</td><td>0.01500000</td><td>43441.66666667</td><td>651.63</td>" in text
    assert "<td>1197.60</td><td>198.60</td>" in text  # ETH value, unrealised
    assert "<td>2022.60</td><td>371.98</td>" in text and "<td>492.00</td><td>10.63</td>" in text
    # Today: 863.975 now minus 300 + 491.998999 at yesterday's snapshot.
    assert f"<td>today</td><td>{today}</td><td>71.98</td>" in text
    assert f'?user={alice.pk}&amp;year=2026">2026</a>' in text
    start = text.index('id="value-chart"')
    chart = text[start : text.index("</svg>", start)]
    assert chart.count("<circle") == 2 and "<polyline" not in chart  # two points, split by a gap
    assert "http" not in chart.replace("http://www.w3.org/2000/svg", "")  # nothing loaded


def test_the_page_defaults_to_the_staff_members_own_portfolio_and_lists_users(client, viewer):
    alice = UserFactory(username="alice")
    alices_fills(alice)
    login_verified(client, viewer)

    text = client.get("/admin/portfolio/").content.decode()

    assert "Portfolio of viewer" in text and "No fills yet." in text
    assert f'<option value="{alice.pk}">alice</option>' in text


def test_the_console_downloads_the_chosen_users_ledger(client, viewer):
    alice = UserFactory(username="alice")
    alices_fills(alice)
    login_verified(client, viewer)

    response = client.get("/admin/portfolio/ledger.csv", {"user": alice.pk, "year": "2026"})

    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    assert len(response.content.decode().splitlines()) == 1 + 5
    bad = client.get("/admin/portfolio/ledger.csv", {"user": alice.pk, "year": "abc"})
    assert bad.status_code == 400 and b"LEDGER_YEAR_INVALID" in bad.content
    assert client.get("/admin/portfolio/", {"user": "abc"}).status_code == 404
    assert client.get("/admin/portfolio/", {"user": "999999"}).status_code == 404
