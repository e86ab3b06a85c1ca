"""Every API endpoint with three personas: alice owns the objects, bob is another user,
charlie is staff without permissions. Another user's object is a 404 with a *_NOT_FOUND code,
nothing in the database changes, and no answer carries anything of alice's.

The table covers every URL under /api/v1/: a new endpoint without a case fails the first test.
"""

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.api.test_proposals_api import client_for
from tests.isolation.personas import MARKER, World, database_state, owned_state, url_routes

pytestmark = pytest.mark.django_db

# Endpoints addressing one object by id: (url name, id kwarg, World attribute, requests).
OBJECT_CASES = {
    "proposal-detail": ("proposal_id", "proposal", [("get", None)]),
    "proposal-approve": ("proposal_id", "proposal", [("post", {})]),
    "proposal-reject": ("proposal_id", "proposal", [("post", {"reason": "not yours"})]),
    "proposal-execute": (
        "proposal_id",
        "approved",
        [("post", {}), ("post", {"override_cooldown": True, "override_reason": "mine now"})],
    ),
    "proposal-preflight": ("proposal_id", "approved", [("get", None)]),
    "execution-detail": ("execution_id", "execution", [("get", None)]),
    "scan-job-detail": ("job_id", "scan_job", [("get", None), ("patch", {"enabled": False})]),
    "notification-delivery-detail": ("delivery_id", "delivery", [("get", None)]),
}

# Endpoints without an id: each persona reaches only their own rows.
OWN_CASES = {
    "policy": [("get", None), ("patch", {"trading_enabled": False})],
    "proposal-list": [
        ("get", None),
        ("get", {"market": f"{MARKER}-EUR"}),
        ("post", {"market": "BTC-EUR", "side": "buy", "amount_eur": "20", "confidence": 75}),
    ],
    "execution-list": [("get", None)],
    "scan-job-list": [("get", None), ("post", {"markets": ["BTC-EUR"]})],
    "trading-status": [("get", None)],
    "budget": [("get", None)],
    "notifications": [("get", None), ("patch", {"email": "someone@example.com"})],
    "notification-secret": [("post", {})],
    "notification-delivery-list": [("get", None)],
    "notification-telegram-link": [("post", {})],
    "scorecard": [("get", None), ("get", {"horizon": 24})],
    "position-list": [("get", None)],
    "ledger-csv": [("get", None), ("get", {"year": str(timezone.now().year)})],
}

# No user data behind these.
WITHOUT_USER_DATA = {"schema", "docs", "not-found"}


def api_url_names() -> set[str]:
    return {p.name for route, p in url_routes() if route.startswith("api/v1/")}


def test_every_api_endpoint_has_a_persona_case():
    assert api_url_names() == set(OBJECT_CASES) | set(OWN_CASES) | WITHOUT_USER_DATA


def send(client, method: str, url: str, body):
    if method == "get":
        return client.get(url, body)
    return getattr(client, method)(url, body, format="json")


OBJECT_REQUESTS = [
    (name, method, body)
    for name, (_, _, requests) in OBJECT_CASES.items()
    for method, body in requests
]
OWN_REQUESTS = [
    (name, method, body) for name, requests in OWN_CASES.items() for method, body in requests
]


@pytest.fixture
def world(settings):
    settings.TELEGRAM_BOT_TOKEN = "1:persona-tests"  # the link code API is on; no call is made
    return World()


@pytest.mark.parametrize("intruder", ["bob", "charlie"])
@pytest.mark.parametrize("name, method, body", OBJECT_REQUESTS)
def test_another_users_object_is_not_found_and_nothing_changes(world, intruder, name, method, body):
    kwarg, attribute, _ = OBJECT_CASES[name]
    url = reverse(name, kwargs={kwarg: getattr(world, attribute).pk})
    before = database_state()

    response = send(client_for(getattr(world, intruder)), method, url, body)

    assert response.status_code == 404, response.content
    error = response.json()
    assert set(error) == {"code", "message", "extra"} and error["code"].endswith("_NOT_FOUND")
    assert database_state() == before


@pytest.mark.parametrize("name, method, body", OBJECT_REQUESTS)
def test_the_owner_reaches_the_same_object(world, exchange, name, method, body):
    # The control for the test above: the same address is found for alice.
    kwarg, attribute, _ = OBJECT_CASES[name]
    url = reverse(name, kwargs={kwarg: getattr(world, attribute).pk})
    response = send(client_for(world.alice), method, url, body)
    assert response.status_code != 404, response.content


@pytest.mark.parametrize("intruder", ["bob", "charlie"])
@pytest.mark.parametrize("name, method, body", OWN_REQUESTS)
def test_own_endpoints_show_and_change_nothing_of_another_user(world, intruder, name, method, body):
    alice_before = owned_state(world.alice)
    response = send(client_for(getattr(world, intruder)), method, reverse(name), body)

    assert response.status_code in (200, 201), response.content
    assert MARKER.lower() not in response.content.decode().lower()
    assert owned_state(world.alice) == alice_before


@pytest.mark.parametrize("name, method, body", [r for r in OWN_REQUESTS if r[1] == "get"])
def test_own_endpoints_show_the_owner_her_rows(world, name, method, body):
    # The control for the test above: alice's answer does carry her marker.
    response = send(client_for(world.alice), method, reverse(name), body)
    assert response.status_code == 200
    if name != "trading-status":  # it reports counts, and a cooldown only for a live trade
        assert MARKER.lower() in response.content.decode().lower()
