"""The web process never loads the trade client and never holds a trade key, even after
serving every kind of request, an execute included."""

import pytest

from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory
from tests.workers import database_url, web_process_report

pytestmark = pytest.mark.django_db(transaction=True)

WEB_PROCESS = """
import json, os, sys
import django
django.setup()
from django.test import Client
from django.contrib.auth import get_user_model
from tests.factories import api_token, login_verified

user = get_user_model().objects.get(username="alice")
api = Client(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
staff = Client()
login_verified(staff, get_user_model().objects.get(username="root"))
proposal_id = int(sys.argv[1])
statuses = [
    api.get("/api/v1/proposals/").status_code,
    api.get(f"/api/v1/proposals/{proposal_id}/preflight/").status_code,
    api.post(f"/api/v1/proposals/{proposal_id}/execute/", {}, content_type="application/json")
    .status_code,
    api.get("/api/v1/executions/").status_code,
    api.get("/api/v1/trading/status/").status_code,
    staff.get("/admin/trading/tradeproposal/").status_code,
    staff.get("/admin/trading/tradeexecution/").status_code,
    staff.get("/healthz").status_code,
]
print(json.dumps({
    "statuses": statuses,
    "trade_client_loaded": "exchange.orders" in sys.modules,
    "execution_engine_loaded": "trading.send" in sys.modules or "trading.reconcile" in sys.modules,
    "trade_key_in_env": any(k.startswith("BITVAVO_TRADE") for k in os.environ),
}))
"""


def test_a_web_process_serving_requests_never_loads_the_trade_client(exchange):
    alice = UserFactory(username="alice")
    UserFactory(username="root", is_staff=True, is_superuser=True)
    proposal = TradeProposalFactory(user=PolicyFactory(user=alice).user, approved=True)
    report = web_process_report(
        WEB_PROCESS,
        str(proposal.pk),
        env={
            "DATABASE_URL": database_url(),
            "BITVAVO_API_URL": exchange.api_url,
            "ALLOWED_HOSTS": "testserver",
        },
    )
    assert report["statuses"] == [200, 200, 202, 200, 200, 200, 200, 200]
    assert report["trade_client_loaded"] is False
    assert report["execution_engine_loaded"] is False
    assert report["trade_key_in_env"] is False
    assert exchange.orders() == [], "the web process claimed; it sent nothing"
