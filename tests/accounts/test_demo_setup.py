"""The demo user gets new credentials each run, the second factor included: demo_setup removes
the old device, so the first sign-in shows the enrolment page, and says so."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.factories import totp_device

pytestmark = pytest.mark.django_db


def test_demo_setup_starts_the_demo_user_on_enrolment(client):
    call_command("demo_setup", stdout=io.StringIO())
    demo = get_user_model().objects.get(username="demo")
    totp_device(demo)
    out = io.StringIO()
    call_command("demo_setup", stdout=out)
    assert not TOTPDevice.objects.filter(user=demo).exists()
    assert "scan the QR code" in out.getvalue()
    password = out.getvalue().split("password '", 1)[1].split("'", 1)[0]
    client.post(reverse("admin:login"), {"username": "demo", "password": password})
    response = client.get(reverse("admin:trading_tradeproposal_changelist"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:two_factor_setup"))
    assert b"<svg" in client.get(response.url).content
