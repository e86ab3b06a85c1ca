import pytest
from django.contrib.auth.models import Permission

from ops.dashboard import DASHBOARD_PERMISSIONS, USERS_PER_PAGE
from tests.factories import (
    GptUsageLogFactory,
    PolicyFactory,
    ScanJobFactory,
    TradeExecutionFactory,
    UserFactory,
    login_verified,
)

pytestmark = pytest.mark.django_db


def test_the_dashboard_shows_trades_against_caps_llm_use_and_scans(client):
    policy = PolicyFactory(user=UserFactory(username="alice"), max_daily_trades=5)
    for _ in range(2):
        TradeExecutionFactory(proposal__user=policy.user)
    TradeExecutionFactory(proposal__user=policy.user, status="FAILED", error_code="X")
    GptUsageLogFactory(user=policy.user, status="RESERVED")
    ScanJobFactory(user=policy.user, last_error="boom")
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))

    page = client.get("/admin/dashboard/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "<td>2 / 5</td>" in text, "failed executions do not count against the cap"
    assert "<td>1 / 48</td>" in text
    assert "<td>CLAIMED</td><td>2</td>" in text and "<td>FAILED</td><td>1</td>" in text
    assert "boom" in text


def test_the_dashboard_is_for_staff_only(client):
    login_verified(client, UserFactory())
    assert client.get("/admin/dashboard/").status_code == 302


def test_the_dashboard_needs_view_permissions_on_what_it_shows(client):
    viewer = UserFactory(is_staff=True)
    login_verified(client, viewer)
    assert client.get("/admin/dashboard/").status_code == 403
    codenames = [name.split(".")[1] for name in DASHBOARD_PERMISSIONS]
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    assert client.get("/admin/dashboard/").status_code == 200


def test_the_console_links_to_the_dashboard_only_for_who_may_open_it(client):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_tradeproposal"))
    login_verified(client, viewer)
    link = b'href="/admin/dashboard/"'
    assert link not in client.get("/admin/trading/tradeproposal/").content
    codenames = [name.split(".")[1] for name in DASHBOARD_PERMISSIONS]
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    page = client.get("/admin/trading/tradeproposal/")
    assert page.status_code == 200
    assert link in page.content


def test_the_dashboard_shows_users_a_page_at_a_time(client):
    for n in range(USERS_PER_PAGE + 3):
        PolicyFactory(user=UserFactory(username=f"trader{n:03d}"))
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))

    first = client.get("/admin/dashboard/").content.decode()
    last = client.get("/admin/dashboard/?page=2").content.decode()

    assert "trader000" in first and f"trader{USERS_PER_PAGE - 1:03d}" in first
    assert f"trader{USERS_PER_PAGE:03d}" not in first
    assert f"Users 1–{USERS_PER_PAGE} of {USERS_PER_PAGE + 3}" in first
    assert '<a href="?page=2">next</a>' in first
    assert f"trader{USERS_PER_PAGE + 2:03d}" in last and "trader000" not in last
    # A page number a client made up is no error: the first or the last page.
    for page in ("abc", "0", "999", "-1"):
        response = client.get(f"/admin/dashboard/?page={page}")
        assert response.status_code == 200, page
