"""The approval console: confirmation pages with a preflight preview, permissions, switches."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory, login_verified
from trading.models import EmergencyStop, TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:trading_tradeproposal_changelist")


def staff(*codenames):
    user = UserFactory(is_staff=True)
    perms = ["view_tradeproposal", *codenames]
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


def action(client, name, proposals, **extra):
    data = {"action": name, "_selected_action": [p.pk for p in proposals], **extra}
    return client.post(CHANGELIST, data)


def test_the_changelist_shows_proposals_and_the_stop_without_n_plus_one(
    client, django_assert_max_num_queries
):
    login_verified(client, staff("approve_proposal"))
    for _ in range(3):
        TradeProposalFactory()
    # The same bound for 3 and 23 rows; it includes setting and clearing the request's scope
    # and reading the session's TOTP device.
    with django_assert_max_num_queries(14):
        response = client.get(CHANGELIST)
    for _ in range(20):
        TradeProposalFactory()
    with django_assert_max_num_queries(14):
        response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert b"Emergency stop: off" in response.content


def test_approve_asks_first_with_a_preflight_preview_then_approves(client, exchange):
    approver = staff("approve_proposal")
    login_verified(client, approver)
    policy = PolicyFactory()
    proposal = TradeProposalFactory(user=policy.user)

    confirm = action(client, "approve_selected", [proposal])
    assert confirm.status_code == 200
    assert b"Approve?" in confirm.content
    assert b"kill_switch" in confirm.content and b"balance" in confirm.content
    proposal.refresh_from_db()
    assert proposal.status == "PENDING", "nothing happens before the confirmation"

    done = action(client, "approve_selected", [proposal], post="yes")
    assert done.status_code == 302
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == ("APPROVED", approver)


def test_reject_needs_a_reason(client):
    login_verified(client, staff("approve_proposal"))
    proposal = TradeProposalFactory()
    again = action(client, "reject_selected", [proposal], post="yes", reason="")
    assert again.status_code == 200 and b"This field is required" in again.content
    action(client, "reject_selected", [proposal], post="yes", reason="Not now")
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decision_reason) == ("REJECTED", "Not now")


def test_execute_claims_and_queues_but_never_calls_the_exchange(client, exchange):
    login_verified(client, staff("execute_proposal"))
    policy = PolicyFactory()
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    refused = TradeProposalFactory(user=policy.user, approved=True, confidence=25)

    action(client, "execute_selected", [proposal, refused], post="yes")

    execution = TradeExecution.objects.get()
    assert (execution.proposal, execution.status) == (proposal, "CLAIMED")
    assert exchange.orders() == []
    messages = [m.message for m in client.get(CHANGELIST).context["messages"]]
    assert any("CONFIDENCE_TOO_LOW" in m for m in messages)


@pytest.mark.parametrize(
    "name, needed",
    [("approve_selected", "approve_proposal"), ("execute_selected", "execute_proposal")],
)
def test_staff_without_the_permission_cannot_act(client, name, needed):
    login_verified(client, staff())
    proposal = TradeProposalFactory(approved=name == "execute_selected")
    response = action(client, name, [proposal], post="yes")
    assert response.status_code == 200  # the changelist again, with "no action selected"
    proposal.refresh_from_db()
    assert proposal.status == ("APPROVED" if name == "execute_selected" else "PENDING")
    assert not TradeExecution.objects.exists()
    assert name not in offered_actions(client)
    login_verified(client, staff(needed))
    assert name in offered_actions(client)


def offered_actions(client):
    form = client.get(CHANGELIST).context["action_form"]
    return [choice for choice, _ in form.fields["action"].choices] if form else []


def test_an_override_needs_its_permission_and_a_reason(client):
    proposal = TradeProposalFactory(approved=True)
    url = reverse("admin:trading_tradeproposal_override", args=[proposal.pk])
    login_verified(client, staff("approve_proposal"))
    assert client.post(url, {"override_cooldown": "on", "reason": "x"}).status_code == 403

    overrider = staff("override_guards")
    login_verified(client, overrider)
    assert client.post(url, {"override_cooldown": "on", "reason": ""}).status_code == 200
    proposal.refresh_from_db()
    assert not proposal.override_cooldown
    client.post(url, {"override_cooldown": "on", "reason": "Rebalance after deposit"})
    proposal.refresh_from_db()
    assert proposal.override_cooldown and proposal.override_by == overrider
    assert not proposal.override_anti_flip


def test_the_emergency_stop_is_one_click_for_those_allowed(client):
    url = reverse("admin:trading_emergency_stop_toggle")
    login_verified(client, staff("approve_proposal"))
    assert client.post(url, {"active": "1", "reason": "x"}).status_code == 403
    login_verified(client, staff("emergency_stop"))
    client.post(url, {"active": "1", "reason": "Exchange incident"})
    stop = EmergencyStop.objects.get()
    assert stop.active and stop.reason == "Exchange incident" and stop.changed_by is not None
    assert b"EMERGENCY STOP ACTIVE" in client.get(CHANGELIST).content


def test_audit_views_are_read_only(client):
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))
    execution_url = reverse("admin:trading_tradeexecution_add")
    assert client.get(execution_url).status_code == 403
    assert TradeProposal.objects.count() == 0
