"""One audit log: every staff action that changes money or rules lands in it once, with actor,
time, address and before/after; the console reads it and cannot change it."""

import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from accounts.models import AuditEntry
from tests.factories import PolicyFactory, TradeProposalFactory, api_token, login_verified
from tests.isolation.test_admin_personas import change_form, post_action, post_page
from tests.isolation.test_admin_personas import operator as operator  # noqa: F401 - fixture
from tests.isolation.test_admin_personas import world as world  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.7"


def entries_after(last_id: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(id__gt=last_id).order_by("id"))


def last_id() -> int:
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


@pytest.fixture
def console(client, operator):  # noqa: F811
    # Tokens and the audit log are accounts' models: the operator may see and revoke them.
    operator.user_permissions.add(*Permission.objects.filter(content_type__app_label="accounts"))
    login_verified(client, operator)
    client.defaults["REMOTE_ADDR"] = ADDRESS
    return client


# (what the operator does, the action audited, what "after" holds)
CASES = {
    "approve": (
        lambda c, w: post_action(c, w, "trading.tradeproposal", "approve_selected"),
        "proposal_approve",
        {"status": "APPROVED"},
    ),
    "reject": (
        lambda c, w: post_action(c, w, "trading.tradeproposal", "reject_selected"),
        "proposal_reject",
        {"status": "REJECTED", "reason": "no"},
    ),
    "execute": (
        lambda c, w: execute_tradeable(c),
        "execution_request",
        {"execution_status": "CLAIMED"},
    ),
    "override": (
        lambda c, w: post_page(c, w, "trading_tradeproposal_override"),
        "override_set",
        {"cooldown": True, "anti_flip": False, "reason": "x"},
    ),
    "emergency stop": (
        lambda c, w: post_page(c, w, "trading_emergency_stop_toggle"),
        "emergency_stop",
        {"active": True, "reason": "not mine"},
    ),
    "kill switch": (
        lambda c, w: post_action(c, w, "trading.policy", "disable_trading"),
        "kill_switch",
        {"trading_enabled": False},
    ),
    "policy change": (
        lambda c, w: c.post(
            reverse("admin:trading_policy_change", args=[w.policy.pk]),
            change_form(w.policy, max_order_eur=60),
        ),
        "policy_change",
        {"max_order_eur": Decimal(60)},
    ),
}


def execute_tradeable(client):
    # The personas' market is unknown to the exchange (preflight refuses, nothing changes).
    proposal = TradeProposalFactory(user=PolicyFactory().user, approved=True)
    client.post(
        reverse("admin:trading_tradeproposal_changelist"),
        {"action": "execute_selected", "_selected_action": [proposal.pk], "post": "yes"},
    )


def same(actual, expected) -> bool:
    return Decimal(actual) == expected if isinstance(expected, Decimal) else actual == expected


@pytest.mark.parametrize("case", list(CASES))
def test_each_console_action_is_audited_once_with_actor_address_and_before_after(
    console,
    world,
    operator,
    exchange,
    case,  # noqa: F811
):
    act, action, after = CASES[case]
    start = last_id()
    act(console, world)
    entries = entries_after(start)
    assert [e.action for e in entries] == [action]
    entry = entries[0]
    assert (entry.actor, entry.actor_name, entry.address) == (operator, "olivia", ADDRESS)
    assert all(same(entry.after[key], value) for key, value in after.items()), entry.after
    assert entry.before and entry.before != entry.after


def test_a_refused_action_writes_nothing(client, world):  # noqa: F811
    # charlie may only view: the refused approval leaves no entry.
    client.force_login(world.charlie)
    start = last_id()
    post_action(client, world, "trading.tradeproposal", "approve_selected")
    assert entries_after(start) == []


def test_tokens_created_and_revoked_are_audited(console, world, operator):  # noqa: F811
    start = last_id()
    call_command(
        "api_token", "create", "alice", "--name", "bot", "--scope", "trade", stdout=io.StringIO()
    )
    token = world.alice.auth_token_set.get()
    console.post(
        reverse("admin:accounts_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [token.pk]},
    )
    entries = entries_after(start)
    assert [e.action for e in entries] == ["token_create", "token_revoke"]
    assert entries[0].actor is None and entries[0].after["scope"] == "trade"
    assert entries[1].actor == operator and entries[1].address == ADDRESS
    assert not world.alice.auth_token_set.exists()


def test_an_api_change_is_audited_with_the_token_user(world):  # noqa: F811
    from rest_framework.test import APIClient

    client = APIClient(REMOTE_ADDR=ADDRESS)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(world.alice)}")
    start = last_id()
    assert (
        client.patch("/api/v1/policy/", {"max_order_eur": "70"}, format="json").status_code == 200
    )
    [entry] = entries_after(start)
    assert (entry.action, entry.actor, entry.address) == ("policy_change", world.alice, ADDRESS)
    assert Decimal(entry.before["max_order_eur"]) == 77
    assert Decimal(entry.after["max_order_eur"]) == 70


def test_the_console_shows_the_log_and_cannot_change_it(console, world):  # noqa: F811
    post_action(console, world, "trading.tradeproposal", "approve_selected")
    entry = AuditEntry.objects.get()
    page = console.get(reverse("admin:accounts_auditentry_changelist"))
    assert page.status_code == 200 and "proposal_approve" in page.content.decode()
    change = reverse("admin:accounts_auditentry_change", args=[entry.pk])
    assert console.get(change).status_code == 200  # readable
    console.post(change, {"action": "policy_change", "subject": "forged"})
    assert console.get(reverse("admin:accounts_auditentry_add")).status_code == 403
    console.post(reverse("admin:accounts_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    entry.refresh_from_db()
    assert (entry.action, entry.subject) == ("proposal_approve", f"proposal #{world.proposal.pk}")
