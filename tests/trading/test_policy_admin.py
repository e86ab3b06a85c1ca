"""The policy page in the admin changes a policy through the policy service, like the API:
the model's bounds and rules, the owner kept, and a flipped kill switch announced with who
flipped it."""

import pytest
from django.urls import reverse

from tests.factories import PolicyFactory, UserFactory, login_verified
from tests.workers import queue_drain
from trading.models import AllocationChange, Policy

pytestmark = pytest.mark.django_db(transaction=True)


def change_form_data(client, url: str, **changes) -> dict:
    form = client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(allowlist='["BTC-EUR"]', **changes)
    return {name: value for name, value in data.items() if value is not False}


def test_a_policy_changed_in_the_admin_is_announced_with_the_staff_member(client):
    operator = UserFactory(is_staff=True, is_superuser=True)
    login_verified(client, operator)
    policy = PolicyFactory(trading_enabled=True, max_order_eur="100")
    url = reverse("admin:trading_policy_change", args=[policy.pk])
    queue_drain("notify")

    response = client.post(
        url, change_form_data(client, url, trading_enabled="", max_order_eur="60")
    )

    assert response.status_code == 302, response.content
    policy.refresh_from_db()
    assert (policy.trading_enabled, str(policy.max_order_eur)) == (False, "60.00")
    [(task, (event, facts))] = queue_drain("notify")
    assert (task, event) == ("trading.tasks.notify_event", "kill_switch")
    assert facts["actor_id"] == operator.pk, "the staff member, not the policy's owner"


def test_the_admin_keeps_the_model_bounds_and_the_owner(client):
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))
    policy = PolicyFactory(cooldown_minutes=60)
    owner, other = policy.user_id, UserFactory()
    url = reverse("admin:trading_policy_change", args=[policy.pk])

    refused = client.post(url, change_form_data(client, url, cooldown_minutes=10**6))
    assert refused.status_code == 200
    assert "cooldown_minutes" in refused.context["adminform"].form.errors

    moved = client.post(url, change_form_data(client, url, user=other.pk, cooldown_minutes=5))
    assert moved.status_code == 302, moved.content
    policy.refresh_from_db()
    assert (policy.user_id, policy.cooldown_minutes) == (owner, 5)
    assert not Policy.objects.filter(user=other).exists()


def test_staff_fund_a_user_by_changing_the_allocation_and_it_is_audited(client):
    operator = UserFactory(is_staff=True, is_superuser=True)
    login_verified(client, operator)
    policy = PolicyFactory(allocation_eur="100")
    url = reverse("admin:trading_policy_change", args=[policy.pk])

    response = client.post(url, change_form_data(client, url, allocation_eur="250.00"))

    assert response.status_code == 302, response.content
    policy.refresh_from_db()
    assert str(policy.allocation_eur) == "250.00"
    change = AllocationChange.objects.get(user=policy.user)
    assert (change.actor, str(change.before_eur), str(change.after_eur)) == (
        operator,
        "100.00",
        "250.00",
    )
    # A change of anything else is not a funding.
    client.post(url, change_form_data(client, url, max_order_eur="60"))
    assert AllocationChange.objects.filter(user=policy.user).count() == 1
    history = client.get(reverse("admin:trading_allocationchange_changelist"))
    assert history.status_code == 200 and "250.00" in history.content.decode()
