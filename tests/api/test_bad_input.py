"""Input a client can send that once reached a 500 (or Django's HTML 400): each is now a 4xx
in the API's one error shape with a stable code, and nothing is written.

Requests go through the full WSGI stack with DEBUG off, as under gunicorn: an exception is a
500 answer here, not a test error."""

import json

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from notifications.models import NotificationSettings
from tests.factories import PolicyFactory, UserFactory, api_token
from trading.models import TradeProposal

pytestmark = pytest.mark.django_db

PROPOSAL = {"market": "BTC-EUR", "side": "buy", "amount_eur": "20", "confidence": 50}


@pytest.fixture
def client():
    alice = PolicyFactory(user=UserFactory(username="alice")).user
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(alice)}")
    with override_settings(DEBUG=False):
        yield client


def send(client, method: str, url: str, raw: str | bytes, content_type="application/json"):
    body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return getattr(client, method)(url, data=body, content_type=content_type)


def assert_refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response.content[:300]
    body = response.json()
    assert set(body) == {"code", "message", "extra"}, body
    assert body["code"] == code, body
    return body


def nothing_written():
    return not TradeProposal.objects.exists() and not NotificationSettings.objects.exists()


# A lone surrogate, written as JSON escapes it: valid JSON, not storable text.
LONE_SURROGATE = '"\\ud800"'


@pytest.mark.parametrize(
    "method, url, raw, field",
    [
        (
            "post",
            "/api/v1/proposals/",
            json.dumps(PROPOSAL)[:-1] + f', "rationale": {LONE_SURROGATE}}}',
            "rationale",
        ),
        ("patch", "/api/v1/notifications/", f'{{"webhook_url": {LONE_SURROGATE}}}', "webhook_url"),
        ("patch", "/api/v1/notifications/", '{"events": ["x", "a\\u0000b"]}', "events.1"),
        ("post", "/api/v1/scan-jobs/", f'{{"markets": [{LONE_SURROGATE}]}}', "markets.0"),
        ("post", "/api/v1/proposals/", f"{{{LONE_SURROGATE}: 1}}", "body"),
    ],
)
def test_text_postgresql_cannot_store_is_refused_in_one_place(client, method, url, raw, field):
    body = assert_refused(send(client, method, url, raw), 400, "TEXT_NOT_STORABLE")
    assert body["extra"]["field"] == field
    assert nothing_written()


def test_a_nul_character_in_a_form_body_is_refused_too(client):
    response = client.post(
        "/api/v1/proposals/",
        data="market=BTC-EUR&side=buy&amount_eur=20&confidence=50&rationale=a%00b",
        content_type="application/x-www-form-urlencoded",
    )
    assert assert_refused(response, 400, "TEXT_NOT_STORABLE")["extra"]["field"] == "rationale"
    assert nothing_written()


@pytest.mark.parametrize(
    "url",
    ["http://[::1/", "https://hooks.example:65536/x", "https://hooks.example:99999999/x"],
)
def test_a_webhook_url_urlsplit_cannot_read_is_invalid(client, url):
    response = send(client, "patch", "/api/v1/notifications/", json.dumps({"webhook_url": url}))
    assert assert_refused(response, 400, "WEBHOOK_URL_INVALID")["extra"]["field"] == "webhook_url"
    assert nothing_written()


@pytest.mark.parametrize(
    "method, url, raw",
    [
        ("post", "/api/v1/proposals/", "[" * 100_000),
        ("post", "/api/v1/proposals/", "[" * 100_000 + "]" * 100_000),
        ("patch", "/api/v1/notifications/", '{"events": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        ("post", "/api/v1/proposals/", '{"rationale": ' + "[" * 2_000 + "]" * 2_000 + "}"),
        ("patch", "/api/v1/policy/", "[" * 40 + "]" * 40),
    ],
)
def test_deeply_nested_json_is_refused_as_too_deep(client, method, url, raw):
    assert_refused(send(client, method, url, raw), 400, "JSON_TOO_DEEP")
    assert nothing_written()


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_a_body_over_the_upload_limit_is_a_413_in_the_error_shape(client, content_type):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    raw = json.dumps({**PROPOSAL, "rationale": "x" * size})
    if content_type != "application/json":
        raw = "market=BTC-EUR&side=buy&amount_eur=20&confidence=50&rationale=" + "x" * size
    response = send(client, "post", "/api/v1/proposals/", raw, content_type)
    body = assert_refused(response, 413, "REQUEST_TOO_LARGE")
    assert body["extra"]["max_bytes"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert nothing_written()


@pytest.mark.parametrize(
    "field, value",
    [
        ("amount_eur", "10_000"),
        ("amount_eur", "1_0"),
        ("amount_eur", "\u0661\u0660"),  # Arabic-Indic 10
        ("amount_eur", "\uff11\uff10"),  # full-width 10
        ("amount_eur", "1e2"),
        ("amount_eur", " 10"),
        ("amount_eur", "10\n"),
        ("confidence", 75.0),
        ("confidence", "75"),
    ],
)
def test_values_python_reads_as_numbers_by_accident_are_refused(client, field, value):
    response = send(client, "post", "/api/v1/proposals/", json.dumps({**PROPOSAL, field: value}))
    assert assert_refused(response, 400, "PROPOSAL_INVALID")["extra"]["field"] == field
    assert nothing_written()


def test_the_same_proposal_written_plainly_is_accepted(client):
    # The control: the refusals above are about the bad value, not the request.
    response = send(
        client, "post", "/api/v1/proposals/", json.dumps({**PROPOSAL, "rationale": "ok"})
    )
    assert response.status_code == 201, response.content
    assert TradeProposal.objects.get().amount_eur == 20
