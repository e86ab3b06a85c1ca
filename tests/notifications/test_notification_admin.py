"""Notifications in the admin: settings visible (the secret only as a hint), deliveries
read-only, and a kill switch flipped on the policy page is published after commit."""

import pytest
from django.urls import reverse

from notifications.models import NotificationDelivery
from notifications.services import notification_settings_update
from tests.factories import PolicyFactory, UserFactory, login_verified
from tests.workers import queue_drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(client):
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))
    return client


def test_settings_show_a_secret_hint_and_deliveries_are_read_only(admin_client):
    user = PolicyFactory().user
    row = notification_settings_update(user=user, webhook_url="https://hooks.example/a")
    delivery = NotificationDelivery.objects.create(
        user=user,
        event="kill_switch",
        channel="webhook",
        destination=row.webhook_url,
        dedupe_key="kill_switch:now",
        subject="Trading turned OFF (kill switch)",
        payload={},
    )

    page = admin_client.get(
        reverse("admin:notifications_notificationsettings_change", args=[row.pk])
    )
    assert page.status_code == 200
    assert row.webhook_secret[:6].encode() in page.content
    assert row.webhook_secret.encode() not in page.content

    listed = admin_client.get(reverse("admin:notifications_notificationdelivery_changelist"))
    assert listed.status_code == 200
    assert b"https://hooks.example/a" in listed.content and b"kill_switch" in listed.content
    change = reverse("admin:notifications_notificationdelivery_change", args=[delivery.pk])
    assert admin_client.post(change, {"status": "DELIVERED"}).status_code == 403
    assert (
        admin_client.get(reverse("admin:notifications_notificationdelivery_add")).status_code == 403
    )


def test_turning_trading_off_on_the_policy_page_is_published(admin_client):
    policy = PolicyFactory(trading_enabled=True)
    queue_drain("notify")
    url = reverse("admin:trading_policy_change", args=[policy.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(user=policy.user_id, allowlist='["BTC-EUR"]', trading_enabled="")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.content
    [(task, (event, facts))] = queue_drain("notify")
    assert (task, event) == ("trading.tasks.notify_event", "kill_switch")
    assert facts["user_id"] == policy.user_id and facts["trading_enabled"] is False
