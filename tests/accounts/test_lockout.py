"""Failed sign-ins on the admin login (django-axes): after AXES_FAILURE_LIMIT failures from one
user name or one address, even the right password is refused with a clear message until the
cool-off has passed; staff see the lock-out in the console."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory, login_verified

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
PASSWORD = "correct horse battery staple"


def sign_in(client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, username: str, times: int, address: str = "10.0.0.1") -> list[int]:
    """Signs in with a wrong password `times` times; the answers' status codes."""
    return [sign_in(client, username, "wrong", address).status_code for _ in range(times)]


def test_after_the_limit_even_the_right_password_is_refused_until_the_cool_off_passes(client):
    UserFactory(username="vera", is_staff=True)
    # The failure that reaches the limit is answered with the lock-out already.
    limit = settings.AXES_FAILURE_LIMIT
    assert fail(client, "vera", limit) == [200] * (limit - 1) + [429]
    refused = sign_in(client, "vera", PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.content.decode()
    assert not signed_in(client)

    # The cool-off passes (the attempts are moved back in time, rather than waited for).
    past = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=past)
    assert sign_in(client, "vera", PASSWORD).status_code == 302
    assert signed_in(client)


def test_fewer_failures_than_the_limit_still_sign_in(client):
    # The control: the limit, not one failure, locks.
    UserFactory(username="vera", is_staff=True)
    fail(client, "vera", settings.AXES_FAILURE_LIMIT - 1)
    assert sign_in(client, "vera", PASSWORD).status_code == 302


def test_one_address_trying_many_user_names_is_locked_out(client):
    UserFactory(username="vera", is_staff=True)
    for n in range(settings.AXES_FAILURE_LIMIT):
        fail(client, f"guess{n}", 1, address="10.0.0.9")
    assert sign_in(client, "vera", PASSWORD, address="10.0.0.9").status_code == 429
    # Another address is not locked for vera.
    assert sign_in(client, "vera", PASSWORD, address="10.0.0.2").status_code == 302


def test_one_user_name_tried_from_many_addresses_is_locked_out(client):
    UserFactory(username="vera", is_staff=True)
    for n in range(settings.AXES_FAILURE_LIMIT):
        fail(client, "vera", 1, address=f"10.0.1.{n}")
    assert sign_in(client, "vera", PASSWORD, address="10.0.2.1").status_code == 429


def test_staff_see_the_lock_out_in_the_console(client):
    UserFactory(username="vera", is_staff=True)
    fail(client, "vera", settings.AXES_FAILURE_LIMIT)
    admin = type(client)()
    login_verified(admin, UserFactory(is_staff=True, is_superuser=True))
    page = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert page.status_code == 200
    assert "vera" in page.content.decode()
