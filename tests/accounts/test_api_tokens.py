"""API tokens: stored as digests (what the database holds does not authenticate), with a name,
an expiry, a last-used time and a scope; a `read` token cannot write. Created, listed and
revoked by `manage.py api_token`; the old plaintext tokens move over hashed."""

import importlib
import io
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEntry
from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory, api_token
from trading.models import TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db

PROPOSALS = "/api/v1/proposals/"


def api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def alice():
    return PolicyFactory(user=UserFactory(username="alice")).user


def test_the_database_holds_no_token_that_authenticates(alice):
    token = api_token(alice)
    assert api(token).get(PROPOSALS).status_code == 200
    row = ApiToken.objects.values().get()
    assert token not in {str(value) for value in row.values()}
    for stolen in (row["digest"], row["token_key"]):
        response = api(stolen).get(PROPOSALS)
        assert response.status_code == 401
        assert response.json()["code"] == "AUTHENTICATION_FAILED"


def test_a_read_token_reads_but_cannot_approve_execute_or_change_the_policy(alice, exchange):
    pending = TradeProposalFactory(user=alice)
    approved = TradeProposalFactory(user=alice, approved=True)
    reader = api(api_token(alice, scope="read"))
    assert reader.get(PROPOSALS).status_code == 200
    writes = [
        reader.post(f"{PROPOSALS}{pending.pk}/approve/"),
        reader.post(f"{PROPOSALS}{pending.pk}/reject/", {"reason": "no"}, format="json"),
        reader.post(f"{PROPOSALS}{approved.pk}/execute/"),
        reader.patch("/api/v1/policy/", {"max_order_eur": "5000"}, format="json"),
    ]
    for response in writes:
        assert response.status_code == 403
        assert response.json()["code"] == "TOKEN_READ_ONLY"
    assert TradeProposal.objects.get(pk=pending.pk).status == TradeProposal.Status.PENDING
    assert not TradeExecution.objects.exists()
    # The control: a trade token's execute is claimed.
    assert api(api_token(alice)).post(f"{PROPOSALS}{approved.pk}/execute/").status_code == 202
    assert TradeExecution.objects.filter(proposal=approved).exists()


def test_an_expired_token_is_refused(alice):
    token = api_token(alice)
    ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    assert api(token).get(PROPOSALS).status_code == 401


def test_use_is_recorded_as_the_last_used_time(alice):
    token = api_token(alice)
    assert ApiToken.objects.get().last_used_at is None
    api(token).get(PROPOSALS)
    assert ApiToken.objects.get().last_used_at is not None


def test_a_header_that_is_not_utf8_is_a_401_not_a_500(alice):
    client = APIClient()
    response = client.get(PROPOSALS, HTTP_AUTHORIZATION="Token \xff\xfe")
    assert response.status_code == 401


def test_the_command_creates_lists_and_revokes_with_an_audit_entry_each(alice):
    out = io.StringIO()
    call_command(
        "api_token", "create", "alice", "--name", "ci", "--scope", "read", "--days", "7", stdout=out
    )
    token = out.getvalue().strip().splitlines()[-1]
    row = ApiToken.objects.get()
    assert (row.name, row.scope) == ("ci", "read")
    assert timedelta(days=6) < row.expiry - timezone.now() <= timedelta(days=7)
    assert api(token).get(PROPOSALS).status_code == 200

    listing = io.StringIO()
    call_command("api_token", "list", stdout=listing)
    assert row.token_key in listing.getvalue() and "ci" in listing.getvalue()
    assert token not in listing.getvalue()

    call_command("api_token", "revoke", row.token_key, stdout=io.StringIO())
    assert api(token).get(PROPOSALS).status_code == 401
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["token_create", "token_revoke"]


def test_the_command_refuses_a_bad_scope_or_lifetime(alice):
    with pytest.raises(CommandError, match="expires in 1 to"):
        call_command("api_token", "create", "alice", "--name", "x", "--days", "0")
    assert not ApiToken.objects.exists()


def test_old_plaintext_tokens_move_over_hashed_and_keep_working(alice):
    legacy = Token.objects.create(user=alice)
    migration = importlib.import_module("accounts.migrations.0002_legacy_tokens_hashed")
    migration.forwards(apps, None)
    assert not Token.objects.exists()
    row = ApiToken.objects.get()
    assert row.scope == "trade" and row.expiry is not None
    assert legacy.key not in row.digest
    assert api(legacy.key).get(PROPOSALS).status_code == 200
