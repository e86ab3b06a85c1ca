"""Notification settings and deliveries through the API: validation codes, the generated secret,
and per-user isolation."""

import pytest
from rest_framework.test import APIClient

from notifications.models import NotificationDelivery, NotificationSettings
from tests.api.test_proposals_api import assert_error, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/notifications/"


@pytest.fixture
def alice():
    return UserFactory(username="alice")


@pytest.fixture
def bob():
    return UserFactory(username="bob")


def delivery_for(user, **fields) -> NotificationDelivery:
    return NotificationDelivery.objects.create(
        user=user,
        event="proposal_pending",
        channel="webhook",
        destination="https://hooks.example/oracle",
        dedupe_key=f"proposal:{NotificationDelivery.objects.count() + 1}",
        subject="Proposal awaits approval",
        payload={"event": "proposal_pending"},
        **fields,
    )


def test_before_any_change_nothing_is_configured_and_nothing_is_stored(alice):
    body = client_for(alice).get(URL).json()
    assert body["webhook_url"] == "" and body["email"] == "" and body["webhook_secret"] == ""
    assert "execution_ended" in body["events"] and "daily_summary" in body["events"]
    assert len(body["events"]) == 7
    assert not NotificationSettings.objects.exists()


def test_a_user_sets_a_webhook_and_gets_a_generated_secret(alice):
    client = client_for(alice)
    response = client.patch(
        URL,
        {"webhook_url": "HTTPS://hooks.example/oracle?x=1", "email": "alice@example.com"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["webhook_url"] == "https://hooks.example/oracle?x=1"
    assert body["email"] == "alice@example.com"
    assert len(body["webhook_secret"]) == 64
    assert client.get(URL).json()["webhook_secret"] == body["webhook_secret"]

    rotated = client.post(URL + "secret/").json()["webhook_secret"]
    assert len(rotated) == 64 and rotated != body["webhook_secret"]

    narrowed = client.patch(URL, {"events": ["execution_ended", "emergency_stop"]}, format="json")
    assert narrowed.json()["events"] == ["execution_ended", "emergency_stop"]
    cleared = client.patch(URL, {"webhook_url": "", "email": ""}, format="json").json()
    assert cleared["webhook_url"] == "" and cleared["email"] == ""
    assert cleared["webhook_secret"] == rotated


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("webhook_url", "ftp://hooks.example/oracle", "WEBHOOK_URL_NOT_HTTP"),
        ("webhook_url", "javascript:alert(1)", "WEBHOOK_URL_NOT_HTTP"),
        ("webhook_url", "hooks.example/oracle", "WEBHOOK_URL_NOT_HTTP"),
        ("webhook_url", "http://", "WEBHOOK_URL_INVALID"),
        ("webhook_url", "https://exa mple.com/", "WEBHOOK_URL_INVALID"),
        ("webhook_url", 42, "WEBHOOK_URL_INVALID"),
        ("webhook_url", "https://hooks.example/" + "a" * 500, "WEBHOOK_URL_TOO_LONG"),
        ("webhook_url", "http://127.0.0.1:8765/_sim/reset", "WEBHOOK_URL_PRIVATE"),
        ("webhook_url", "http://169.254.169.254/latest/meta-data/", "WEBHOOK_URL_PRIVATE"),
        ("email", "not-an-address", "EMAIL_INVALID"),
        ("email", ["a@example.com"], "EMAIL_INVALID"),
        ("events", ["execution_ended", "lunch_time"], "NOTIFICATION_EVENT_UNKNOWN"),
        ("events", "execution_ended", "NOTIFICATION_EVENTS_INVALID"),
    ],
)
def test_bad_settings_are_refused_with_a_stable_code_and_nothing_written(
    alice, field, value, code, settings
):
    settings.NOTIFY_ALLOW_PRIVATE_WEBHOOKS = False
    body = assert_error(client_for(alice).patch(URL, {field: value}, format="json"), 400, code)
    assert body["extra"]["field"] == field
    assert not NotificationSettings.objects.exists()


def test_one_users_settings_are_neither_visible_nor_editable_by_another(alice, bob):
    client_for(alice).patch(URL, {"webhook_url": "https://alice.example/hook"}, format="json")
    alice_secret = NotificationSettings.objects.get(user=alice).webhook_secret

    bob_view = client_for(bob).get(URL).json()
    assert bob_view["webhook_url"] == "" and bob_view["webhook_secret"] == ""
    client_for(bob).patch(URL, {"webhook_url": "https://bob.example/hook"}, format="json")
    client_for(bob).post(URL + "secret/")

    mine = NotificationSettings.objects.get(user=alice)
    assert (mine.webhook_url, mine.webhook_secret) == ("https://alice.example/hook", alice_secret)
    assert NotificationSettings.objects.get(user=bob).webhook_url == "https://bob.example/hook"


def test_deliveries_are_listed_per_user_and_another_users_is_a_404(alice, bob):
    mine = delivery_for(alice)
    theirs = delivery_for(bob)

    listed = client_for(alice).get(URL + "deliveries/").json()
    assert [d["id"] for d in listed] == [mine.pk]
    assert client_for(alice).get(f"{URL}deliveries/{mine.pk}/").json()["status"] == "PENDING"
    assert_error(
        client_for(alice).get(f"{URL}deliveries/{theirs.pk}/"), 404, "NOTIFICATION_NOT_FOUND"
    )


def test_an_anonymous_request_sees_no_settings():
    assert_error(APIClient().get(URL), 401, "NOT_AUTHENTICATED")
