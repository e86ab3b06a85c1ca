"""The integration API: same rules as the services, one error shape, per-user isolation."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import (
    GptUsageLogFactory,
    PolicyFactory,
    ScanJobFactory,
    TradeExecutionFactory,
    TradeProposalFactory,
    UserFactory,
    api_token,
)
from trading.models import TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db


def client_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture
def alice():
    return PolicyFactory(user=UserFactory(username="alice")).user


@pytest.fixture
def bob():
    return PolicyFactory(user=UserFactory(username="bob")).user


@pytest.fixture
def charlie():
    """Staff, but without any trading permission."""
    return UserFactory(username="charlie", is_staff=True)


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == code
    return body


def test_an_anonymous_request_is_refused_with_the_error_shape():
    assert_error(APIClient().get("/api/v1/proposals/"), 401, "NOT_AUTHENTICATED")


def test_a_bad_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token nope")
    assert_error(client.get("/api/v1/proposals/"), 401, "AUTHENTICATION_FAILED")


def test_a_user_lists_only_their_own_proposals(alice, bob):
    mine = TradeProposalFactory(user=alice)
    TradeProposalFactory(user=bob)
    response = client_for(alice).get("/api/v1/proposals/")
    assert response.status_code == 200
    assert [p["id"] for p in response.json()] == [mine.pk]


def test_proposals_filter_by_status_and_market(alice):
    TradeProposalFactory(user=alice, market="ETH-EUR")
    wanted = TradeProposalFactory(user=alice, market="BTC-EUR", approved=True)
    response = client_for(alice).get("/api/v1/proposals/?status=APPROVED&market=btc-eur")
    assert [p["id"] for p in response.json()] == [wanted.pk]


def test_an_unknown_status_filter_is_a_clear_error(alice):
    body = assert_error(
        client_for(alice).get("/api/v1/proposals/?status=NOPE"), 400, "INVALID_INPUT"
    )
    assert "status" in body["extra"]["fields"]


def test_an_integration_submits_a_proposal(alice):
    response = client_for(alice).post(
        "/api/v1/proposals/",
        {"market": "BTC-EUR", "side": "buy", "amount_eur": "20.00", "confidence": 75},
        format="json",
    )
    assert response.status_code == 201
    proposal = TradeProposal.objects.get(pk=response.json()["id"])
    assert (proposal.user, proposal.source, proposal.status) == (alice, "api", "PENDING")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"market": "BTC-EUR", "side": "buy", "amount_eur": "20", "confidence": 30}, "confidence"),
        ({"market": "BTC-EUR", "side": "up", "amount_eur": "20", "confidence": 50}, "side"),
        ({"market": "BTC-EUR", "side": "buy", "amount_eur": -1, "confidence": 50}, "amount_eur"),
        ({"market": "BTC", "side": "buy", "amount_eur": "20", "confidence": 50}, "market"),
    ],
)
def test_a_bad_proposal_is_refused_with_a_stable_code(alice, body, field):
    response = client_for(alice).post("/api/v1/proposals/", body, format="json")
    error = assert_error(response, 400, "PROPOSAL_INVALID")
    assert error["extra"]["field"] == field
    assert not TradeProposal.objects.exists()


def test_malformed_json_is_a_clear_error(alice):
    response = client_for(alice).post(
        "/api/v1/proposals/", "{not json", content_type="application/json"
    )
    assert_error(response, 400, "MALFORMED_REQUEST")


@pytest.mark.parametrize("action", ["approve", "reject", "execute", "preflight", ""])
def test_another_users_proposal_is_not_found_in_every_endpoint(alice, bob, action):
    proposal = TradeProposalFactory(user=bob)
    url = f"/api/v1/proposals/{proposal.pk}/{action + '/' if action else ''}"
    client = client_for(alice)
    response = (
        client.get(url)
        if action in ("preflight", "")
        else client.post(url, {"reason": "no"}, format="json")
    )
    assert_error(response, 404, "PROPOSAL_NOT_FOUND")
    proposal.refresh_from_db()
    assert proposal.status == "PENDING"


def test_staff_without_permissions_sees_nothing_of_others(alice, charlie):
    proposal = TradeProposalFactory(user=alice)
    execution = TradeExecutionFactory(proposal__user=alice)
    client = client_for(charlie)
    assert client.get("/api/v1/proposals/").json() == []
    assert_error(client.get(f"/api/v1/proposals/{proposal.pk}/"), 404, "PROPOSAL_NOT_FOUND")
    assert_error(client.get(f"/api/v1/executions/{execution.pk}/"), 404, "EXECUTION_NOT_FOUND")


def test_approve_then_reject_follow_the_state_rules(alice):
    proposal = TradeProposalFactory(user=alice)
    client = client_for(alice)
    assert client.post(f"/api/v1/proposals/{proposal.pk}/approve/").json()["status"] == "APPROVED"
    assert_error(
        client.post(f"/api/v1/proposals/{proposal.pk}/approve/"), 409, "PROPOSAL_STATE_CONFLICT"
    )
    assert_error(
        client.post(f"/api/v1/proposals/{proposal.pk}/reject/", {}, format="json"),
        400,
        "INVALID_INPUT",
    )
    rejected = client.post(
        f"/api/v1/proposals/{proposal.pk}/reject/", {"reason": "changed my mind"}, format="json"
    )
    assert rejected.json()["status"] == "REJECTED"


def test_policy_is_read_and_patched_with_the_model_rules(alice):
    client = client_for(alice)
    before = client.get("/api/v1/policy/").json()
    response = client.patch(
        "/api/v1/policy/", {"allowlist": ["BTC-EUR"], "max_order_eur": "50"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["allowlist"] == ["BTC-EUR"]
    assert response.json()["policy_hash"] != before["policy_hash"]
    error = assert_error(
        client.patch("/api/v1/policy/", {"min_order_eur": "80"}, format="json"),
        400,
        "POLICY_MIN_ABOVE_MAX",
    )
    assert error["message"]
    assert client.get("/api/v1/policy/").json()["min_order_eur"] == before["min_order_eur"]


def test_the_api_shows_the_allocation_and_only_staff_change_it(alice):
    client = client_for(alice)
    assert client.get("/api/v1/policy/").json()["allocation_eur"] == "1000.00"

    error = assert_error(
        client.patch("/api/v1/policy/", {"allocation_eur": "5000"}, format="json"),
        403,
        "POLICY_FIELD_STAFF_ONLY",
    )
    assert error["extra"] == {"fields": ["allocation_eur"]}
    assert client.get("/api/v1/policy/").json()["allocation_eur"] == "1000.00"


def test_execute_refused_by_preflight_answers_409_with_the_codes(alice, exchange):
    proposal = TradeProposalFactory(user=alice, approved=True, confidence=25)
    body = assert_error(
        client_for(alice).post(f"/api/v1/proposals/{proposal.pk}/execute/", {}, format="json"),
        409,
        "PREFLIGHT_REFUSED",
    )
    assert body["extra"]["failed_codes"] == ["CONFIDENCE_TOO_LOW"]
    assert not TradeExecution.objects.exists()


def test_execute_claims_once_and_repeats_return_the_same_execution(alice, exchange):
    proposal = TradeProposalFactory(user=alice, approved=True)
    client = client_for(alice)
    first = client.post(f"/api/v1/proposals/{proposal.pk}/execute/", {}, format="json")
    again = client.post(f"/api/v1/proposals/{proposal.pk}/execute/", {}, format="json")
    assert first.status_code == 202
    assert again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["status"] == "CLAIMED"
    assert TradeExecution.objects.count() == 1
    # The web process claims; only the execute worker sends.
    assert exchange.orders() == []


def test_overrides_through_the_api_need_the_permission(alice, exchange):
    proposal = TradeProposalFactory(user=alice, approved=True)
    client = client_for(alice)
    body = {"override_cooldown": True, "override_reason": "rebalance"}
    assert_error(
        client.post(f"/api/v1/proposals/{proposal.pk}/execute/", body, format="json"),
        403,
        "PERMISSION_DENIED",
    )
    alice.user_permissions.add(Permission.objects.get(codename="override_guards"))
    alice = type(alice).objects.get(pk=alice.pk)
    response = client_for(alice).post(
        f"/api/v1/proposals/{proposal.pk}/execute/", body, format="json"
    )
    assert response.status_code == 202
    proposal.refresh_from_db()
    assert proposal.override_cooldown and proposal.override_by == alice


def test_trading_status_reports_caps_switches_budget_and_the_last_scan(alice, bob):
    TradeExecutionFactory(proposal__user=alice)
    client = client_for(alice)
    assert client.get("/api/v1/trading/status/").json()["last_scan"] is None
    GptUsageLogFactory(user=alice, status="RESERVED")
    GptUsageLogFactory(user=bob, status="RESERVED")
    ScanJobFactory(user=bob, last_finished_at=timezone.now())
    job = ScanJobFactory(user=alice, last_finished_at=timezone.now() - timedelta(minutes=5))

    status = client.get("/api/v1/trading/status/").json()

    assert status["trades_today"] == 1
    assert status["trades_this_hour"] == 1
    assert status["emergency_stop"]["active"] is False
    assert [c["asset"] for c in status["active_cooldowns"]] == ["BTC"]
    policy = alice.trading_policy
    assert status["llm_budget_remaining"] == {
        "today": policy.gpt_daily_limit - 1,
        "this_hour": policy.gpt_hourly_limit - 1,
    }
    assert status["last_scan"]["job_id"] == job.pk, "bob's later scan is not alice's"


def test_the_openapi_schema_is_served(alice):
    response = client_for(alice).get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/proposals/{proposal_id}/execute/" in response.content


def test_a_rationale_with_a_nul_character_is_refused_not_a_server_error(alice):
    # Found by the schema fuzzer: PostgreSQL text cannot hold NUL, the INSERT failed (500).
    # The API's parser refuses it for every field (tests/api/test_bad_input.py).
    body = {"market": "BTC-EUR", "side": "buy", "amount_eur": "20", "confidence": 50}
    response = client_for(alice).post(
        "/api/v1/proposals/", {**body, "rationale": "up\x00trend"}, format="json"
    )
    assert assert_error(response, 400, "TEXT_NOT_STORABLE")["extra"]["field"] == "rationale"
    assert not TradeProposal.objects.exists()


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/v1/proposals/-1/"),
        ("get", "/api/v1/executions/abc/"),
        ("post", "/api/v1/proposals/0.5/approve/"),
        ("patch", "/api/v1/scan-jobs/null/"),
        ("get", "/api/v1/no-such-endpoint/"),
        ("post", "/api/v1/proposals/f%0A2/execute/"),  # a line break in the id
    ],
)
def test_an_address_no_endpoint_matches_is_a_json_404(alice, method, url):
    # Found by the schema fuzzer: ids that are not numbers got Django's HTML 404 page (and a
    # POST the HTML CSRF 403), not the API's error shape.
    assert_error(getattr(client_for(alice), method)(url), 404, "NOT_FOUND")


@pytest.mark.parametrize("claimed_by", ["web", "worker"])
def test_a_refusal_before_sending_leaves_the_proposal_approved_whoever_claimed(
    alice, exchange, claimed_by
):
    from trading.claim import execution_claim
    from trading.models import ProposalEvent
    from trading.send import execution_run, execution_send

    proposal = TradeProposalFactory(user=alice, approved=True)
    client = client_for(alice)
    if claimed_by == "web":
        response = client.post(f"/api/v1/proposals/{proposal.pk}/execute/", {}, format="json")
        claimed = TradeExecution.objects.get(pk=response.json()["id"])
    else:
        claimed = execution_claim(proposal=proposal, actor_id=None).execution
    # The kill switch is flipped between the claim and the send.
    off = client.patch("/api/v1/policy/", {"trading_enabled": False}, format="json")
    assert off.status_code == 200

    outcome = execution_send(execution=claimed)

    assert outcome.refused and outcome.refused_codes == ["KILL_SWITCH"]
    assert exchange.orders() == []
    assert not TradeExecution.objects.exists(), "nothing sent: the claim is taken back"
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.APPROVED
    (event,) = ProposalEvent.objects.filter(proposal=proposal, kind="preflight_failed")
    assert event.data["failed_codes"] == ["KILL_SWITCH"]
    assert event.data["execution_id"] == claimed.pk

    # Once trading is back on, the same proposal runs, once.
    client.patch("/api/v1/policy/", {"trading_enabled": True}, format="json")
    assert execution_run(proposal=proposal).execution.status == "SUBMITTED"
    assert len(exchange.orders()) == 1
