"""The scoping guard (core.scoping), and both layers end to end in a web process that
connects as the web role."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count
from django.test import override_settings

from core.scoping import (
    NOBODY,
    STAFF,
    SYSTEM,
    USER,
    Scope,
    UnscopedQueryError,
    request_scope,
    scope_system,
)
from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory, api_token
from tests.workers import database_url, web_process_report
from trading.models import TradeProposal


@pytest.fixture
def alice_and_bob(db):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    return alice, TradeProposalFactory(user=alice), bob, TradeProposalFactory(user=bob)


def database_scope() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('oracle.scope', true), current_setting('oracle.user_id', true)"
        )
        return cursor.fetchone()


UNSCOPED_READS_AND_WRITES = {
    "list": lambda qs: list(qs),
    "first": lambda qs: qs.first(),
    "get": lambda qs: qs.get(market="BTC-EUR"),
    "count": lambda qs: qs.count(),
    "exists": lambda qs: qs.exists(),
    "aggregate": lambda qs: qs.aggregate(n=Count("pk")),
    "values_list": lambda qs: list(qs.values_list("pk", flat=True)),
    "iterator": lambda qs: list(qs.iterator()),
    "update": lambda qs: qs.update(amount_eur=1),
    "delete": lambda qs: qs.delete(),
}


@pytest.mark.parametrize("operation", UNSCOPED_READS_AND_WRITES)
def test_in_a_users_request_an_unscoped_queryset_raises(alice_and_bob, operation):
    alice, _, _, _ = alice_and_bob
    with request_scope(Scope(USER, alice.pk)):
        with pytest.raises(UnscopedQueryError, match="UNSCOPED_QUERY: TradeProposal"):
            UNSCOPED_READS_AND_WRITES[operation](TradeProposal.objects.filter(market="BTC-EUR"))
    assert TradeProposal.objects.filter(amount_eur=25).count() == 2, "nothing was written"


def test_for_user_and_visible_give_the_users_rows_and_another_user_is_refused(alice_and_bob):
    alice, alice_proposal, bob, _ = alice_and_bob
    with request_scope(Scope(USER, alice.pk)):
        assert list(TradeProposal.objects.for_user(alice)) == [alice_proposal]
        assert list(TradeProposal.objects.visible()) == [alice_proposal]
        assert TradeProposal.objects.visible().filter(market="BTC-EUR").count() == 1
        for other in (bob, bob.pk):
            with pytest.raises(UnscopedQueryError, match=f"user #{bob.pk} read in the request"):
                TradeProposal.objects.for_user(other)


def test_combining_a_scoped_queryset_with_an_unscoped_one_is_unscoped(alice_and_bob):
    alice, alice_proposal, _, _ = alice_and_bob
    mine, everyone = TradeProposal.objects.for_user(alice), TradeProposal.objects.all()
    with request_scope(Scope(USER, alice.pk)):
        for widened in (mine | everyone, everyone | mine, mine.union(everyone)):
            with pytest.raises(UnscopedQueryError):
                list(widened)
        assert list(mine | TradeProposal.objects.for_user(alice)) == [alice_proposal]
        assert list(mine & everyone) == [alice_proposal]


def test_a_request_of_nobody_sees_nothing(alice_and_bob):
    with request_scope(Scope(NOBODY)):
        assert list(TradeProposal.objects.visible()) == []
        with pytest.raises(UnscopedQueryError):
            TradeProposal.objects.count()


@pytest.mark.parametrize("kind", [STAFF, SYSTEM])
def test_staff_and_system_scopes_read_every_users_rows(alice_and_bob, kind):
    alice, _, bob, _ = alice_and_bob
    with request_scope(Scope(kind, alice.pk if kind == STAFF else None)):
        assert TradeProposal.objects.count() == 2
        assert TradeProposal.objects.visible().count() == 2
        assert TradeProposal.objects.for_user(bob).count() == 1


def test_outside_a_request_workers_and_commands_are_not_checked(alice_and_bob):
    assert TradeProposal.objects.count() == 2
    assert TradeProposal.objects.visible().count() == 2
    with scope_system():  # changes nothing outside a request
        assert database_scope() in [(None, None), ("", "")]


def test_scope_system_spans_users_for_one_block_then_the_users_scope_returns(alice_and_bob):
    alice, _, _, _ = alice_and_bob
    with request_scope(Scope(USER, alice.pk)):
        assert database_scope() == ("user", str(alice.pk))
        with scope_system():
            assert TradeProposal.objects.visible().count() == 2
            assert database_scope() == ("system", "")
        assert TradeProposal.objects.visible().count() == 1
        assert database_scope() == ("user", str(alice.pk))
    assert database_scope() == ("", "")


def test_a_request_that_forgets_the_scope_raises_and_leaves_no_scope_behind(client, alice_and_bob):
    alice, _, _, _ = alice_and_bob
    client.force_login(alice)
    with override_settings(ROOT_URLCONF="tests.config.forgetful_urls"):
        with pytest.raises(UnscopedQueryError):
            client.get("/forgetful/orm/")
    assert database_scope() == ("", "")


WEB_PROCESS = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from trading.models import TradeProposal

token, bob_proposal, alice_approved = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
users = get_user_model().objects
api = Client(HTTP_AUTHORIZATION=f"Token {token}")
alice, staff, anonymous = Client(), Client(), Client()
alice.force_login(users.get(username="alice"))
from tests.factories import login_verified
login_verified(staff, users.get(username="root"))

def sql(query):
    with connection.cursor() as cursor:
        cursor.execute(query)
        return list(cursor.fetchone())

def outcome(client, url):
    try:
        return client.get(url).status_code
    except Exception as error:
        return type(error).__name__

with override_settings(ROOT_URLCONF="tests.config.forgetful_urls"):
    report = {
        "role": sql("SELECT current_user")[0],
        "api_ids": sorted(p["id"] for p in api.get("/api/v1/proposals/").json()),
        "api_other_detail": api.get(f"/api/v1/proposals/{bob_proposal}/").status_code,
        "api_other_approve": api.post(f"/api/v1/proposals/{bob_proposal}/approve/").status_code,
        "api_execute": api.post(
            f"/api/v1/proposals/{alice_approved}/execute/", {}, content_type="application/json"
        ).status_code,
        "raw_alice": alice.get("/forgetful/raw/").json()["ids"],
        "raw_anonymous": anonymous.get("/forgetful/raw/").json()["ids"],
        "raw_staff_outside_admin": staff.get("/forgetful/raw/").json()["ids"],
        "orm_alice": outcome(alice, "/forgetful/orm/"),
        "admin_page": staff.get("/admin/trading/tradeproposal/").content.decode(),
        "metrics": anonymous.get("/metrics").content.decode(),
        "scope_after": sql(
            "SELECT current_setting('oracle.scope', true), current_setting('oracle.user_id', true)"
        ),
        "outside_request": TradeProposal.objects.count(),
    }
print(json.dumps(report))
"""


@pytest.mark.django_db(transaction=True)
def test_a_web_process_connected_as_the_web_role_shows_each_user_only_their_rows(
    database_roles, exchange
):
    alice = PolicyFactory(user=UserFactory(username="alice")).user
    bob = PolicyFactory(user=UserFactory(username="bob")).user
    UserFactory(username="root", is_staff=True, is_superuser=True)
    alice_pending = TradeProposalFactory(user=alice)
    alice_approved = TradeProposalFactory(user=alice, approved=True)
    bob_pending = TradeProposalFactory(user=bob)
    token = api_token(alice)
    report = web_process_report(
        WEB_PROCESS,
        token,
        str(bob_pending.pk),
        str(alice_approved.pk),
        env={
            "DATABASE_URL": database_url(database_roles["web"]),
            "BITVAVO_API_URL": exchange.api_url,
            "ALLOWED_HOSTS": "testserver",
        },
    )
    alice_ids = sorted([alice_pending.pk, alice_approved.pk])
    assert report["role"] == database_roles["web"]
    # First layer: the API selects by user; another user's proposal is a 404, unchanged.
    assert report["api_ids"] == alice_ids
    assert report["api_other_detail"] == 404
    assert report["api_other_approve"] == 404
    bob_pending.refresh_from_db()
    assert bob_pending.status == TradeProposal.Status.PENDING
    # The claim works under row security (policy lock, balance recheck across users).
    assert report["api_execute"] == 202
    # Second layer: a raw query without any filter still returns only alice's rows, and
    # nothing when nobody is signed in; the ORM version is stopped by the guard first.
    assert report["raw_alice"] == alice_ids
    assert report["raw_anonymous"] == []
    # Staff see every user's rows in the admin only; elsewhere only their own (none here).
    assert report["raw_staff_outside_admin"] == []
    assert report["orm_alice"] == "UnscopedQueryError"
    # The admin works in the staff scope, /metrics in the system scope: every user's rows.
    for proposal in (alice_pending, alice_approved, bob_pending):
        assert f"/admin/trading/tradeproposal/{proposal.pk}/change/" in report["admin_page"]
    assert 'oracle_executions{error_code="",status="CLAIMED"} 1.0' in report["metrics"]
    # Nothing is left set after the requests; outside a request the web role sees nothing.
    assert report["scope_after"] == ["", ""]
    assert report["outside_request"] == 0
