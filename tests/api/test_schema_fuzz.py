"""Bad input over the whole API: schemathesis generates requests from the OpenAPI schema that
drf-spectacular serves at /api/v1/schema/, valid and invalid, and sends them through the real
Django stack to real PostgreSQL as alice, with her data, bob's data and the simulator present.

No answer may be a 5xx; every answer must be documented in the schema (status, content type,
body), and every error must have the one shape {"code", "message", "extra"}.
"""

import json

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifications.models import NotificationSettings
from tests.factories import (
    GptUsageLogFactory,
    PolicyFactory,
    ScanJobFactory,
    TradeExecutionFactory,
    TradeHistoryFactory,
    TradeProposalFactory,
    UserFactory,
    api_token,
)
from trading.models import TradeProposal

EXAMPLES_PER_OPERATION = 20


@schemathesis.check
def error_has_the_documented_shape(ctx, response, case):
    """Every 4xx answer is {"code": UPPER_SNAKE, "message": text, "extra": object}."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert set(body) == {"code", "message", "extra"}, body
        assert body["code"].isupper() and body["code"].replace("_", "").isalnum(), body
        assert isinstance(body["message"], str) and body["message"], body
        assert isinstance(body["extra"], dict), body


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_has_the_documented_shape,
]


def persona_data() -> dict[str, list[int]]:
    """alice's objects in every state, and one of bob's for each kind (a 404 for alice)."""
    alice = PolicyFactory(user=UserFactory(username="alice")).user
    bob = PolicyFactory(user=UserFactory(username="bob")).user
    proposals = [TradeProposalFactory(user=alice), TradeProposalFactory(user=alice, approved=True)]
    proposals.append(
        TradeProposalFactory(user=alice, status=TradeProposal.Status.REJECTED, approved=True)
    )
    executions = [TradeExecutionFactory(proposal__user=alice)]
    jobs = [ScanJobFactory(user=alice)]
    GptUsageLogFactory(user=alice, status="RESERVED")
    # Fills to value (BTC-EUR, priced by the simulator) and to export.
    TradeHistoryFactory(execution__proposal__user=alice)
    TradeHistoryFactory(execution__proposal__user=alice, execution__proposal__side="sell")
    proposals.append(TradeProposalFactory(user=bob))
    executions.append(TradeExecutionFactory(proposal__user=bob))
    jobs.append(ScanJobFactory(user=bob))
    return {
        "token": api_token(alice),
        "proposal_id": [p.pk for p in proposals],
        "execution_id": [e.pk for e in executions],
        "job_id": [j.pk for j in jobs],
    }


def served_schema() -> dict:
    """The schema /api/v1/schema/ serves (test_the_fuzzed_schema_is_the_served_one checks)."""
    return SchemaGenerator().get_schema(request=None, public=True)


schema = schemathesis.openapi.from_dict(served_schema())


@pytest.fixture
def persona(db, exchange):
    data = persona_data()
    # Like Django's test client: a request must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield data
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail_or_break_its_contract(case, persona):
    # Half of the generated ids land on existing rows (alice's, or bob's for a 404).
    for name, value in (case.path_parameters or {}).items():
        known = persona.get(name)
        if known and isinstance(value, int) and value % 2 == 0:
            case.path_parameters[name] = known[(value // 2) % len(known)]
    case.call_and_validate(
        app=WSGIHandler(), headers={"Authorization": f"Token {persona['token']}"}, checks=CHECKS
    )


def test_the_fuzzed_schema_is_the_served_one(db):
    alice = UserFactory(username="alice")
    client = APIClient()
    client.force_authenticate(alice)
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert json.loads(response.content) == json.loads(json.dumps(served_schema(), default=str))


# Bodies that once reached a 500 or Django's HTML 400 (tests/api/test_bad_input.py has each
# with its code); here they go to every operation that takes a body.
HOSTILE_BODIES = {
    "lone surrogate in rationale": b'{"market": "BTC-EUR", "side": "buy", "amount_eur": "10", '
    b'"confidence": 50, "rationale": "\\ud800", "reason": "\\ud800"}',
    "lone surrogate in webhook_url": b'{"webhook_url": "https://hooks.example/\\ud800"}',
    "NUL in rationale": b'{"market": "BTC-EUR", "side": "buy", "amount_eur": "10", '
    b'"confidence": 50, "rationale": "a\\u0000b", "reason": "\\u0000"}',
    "unparsable URL": b'{"webhook_url": "http://[::1/"}',
    "port over 65535": b'{"webhook_url": "https://hooks.example:65536/"}',
    "nested body": b"[" * 100_000,
    "nested field": b'{"rationale": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "underscored amount": b'{"market": "BTC-EUR", "side": "buy", "amount_eur": "10_000", '
    b'"confidence": 50}',
    "non-ASCII digits": '{"market": "BTC-EUR", "side": "buy", "amount_eur": "\u0661\u0660", '
    '"confidence": 50}'.encode(),
    "float confidence": b'{"market": "BTC-EUR", "side": "buy", "amount_eur": "10", '
    b'"confidence": 75.0}',
    "over the size limit": b'{"rationale": "'
    + b"x" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    + b'"}',
}


def body_operations() -> list[tuple[str, str, dict]]:
    return [
        (path, method, operation)
        for path, operations in served_schema()["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_known_hostile_bodies_get_a_documented_error_from_every_operation(name, persona):
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {persona['token']}")
    before = TradeProposal.objects.count()
    for path, method, operation in body_operations():
        url = path.format(**{key: ids[0] for key, ids in persona.items() if key != "token"})
        response = getattr(client, method)(
            url, data=HOSTILE_BODIES[name], content_type="application/json"
        )
        where = f"{method.upper()} {url}: {response.status_code} {response.content[:200]!r}"
        # Fields an operation does not take are ignored, so not every answer is an error.
        assert response.status_code < 500, where
        assert str(response.status_code) in operation["responses"], where
        assert response["Content-Type"] == "application/json", where
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"code", "message", "extra"}, where
            assert body["code"].isupper() and body["code"].replace("_", "").isalnum(), where
    assert TradeProposal.objects.count() == before
    assert not NotificationSettings.objects.exclude(webhook_url="").exists()
