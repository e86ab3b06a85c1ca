"""Staff who may move money reach the console only after a TOTP code: without a device every
money action and page sends them to enrolment (and changes nothing), with an unverified
device to the code page. Enrolment shows a QR code drawn here; lifting the emergency stop and
overriding a guard ask for a fresh code."""

import re
import time

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.services import VERIFIED_AT_SESSION_KEY
from tests.factories import (
    EmergencyStopFactory,
    PolicyFactory,
    TradeProposalFactory,
    UserFactory,
    login_verified,
    totp_device,
)
from tests.isolation.personas import OUR_APPS, World, database_state, view_only_staff
from tests.isolation.test_admin_personas import (
    ACTION_CASES,
    PAGE_CASES,
    post_action,
    post_page,
)
from trading.models import EmergencyStop, TradeProposal

pytestmark = pytest.mark.django_db

SETUP = reverse("accounts:two_factor_setup")
VERIFY = reverse("accounts:two_factor_verify")
CHANGELIST = reverse("admin:trading_tradeproposal_changelist")
MONEY_CODENAMES = ("approve_proposal", "execute_proposal", "override_guards", "emergency_stop")


def code_of(device: TOTPDevice) -> str:
    """The code an authenticator app shows now."""
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def money_staff(username: str = "olivia", *codenames: str):
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=OUR_APPS))
    return user


@pytest.fixture
def world():
    return World()


def test_staff_who_may_move_money_without_a_device_are_refused_every_money_action_and_page(
    client, world
):
    client.force_login(money_staff())
    before = database_state()
    answers = [post_action(client, world, model, action) for model, action in ACTION_CASES]
    answers += [post_page(client, world, name) for name in PAGE_CASES]
    answers += [client.get(CHANGELIST), client.get(reverse("admin-dashboard"))]
    for response in answers:
        assert response.status_code == 302 and response.url.startswith(SETUP), response
    assert database_state() == before


@pytest.mark.parametrize("codename", MONEY_CODENAMES)
def test_each_money_permission_alone_requires_the_second_factor(client, codename):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    assert client.get(reverse("admin:index")).url.startswith(SETUP)


def test_a_superuser_needs_it_too_and_a_device_not_yet_entered_leads_to_the_code_page(client):
    root = UserFactory(is_staff=True, is_superuser=True)
    totp_device(root)
    client.force_login(root)
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and response.url.startswith(VERIFY)


def test_staff_who_only_view_are_not_asked_for_a_code(client, world):
    # The control: the rule is for money, not for every staff member.
    client.force_login(view_only_staff("vera"))
    assert client.get(CHANGELIST).status_code == 200


def test_enrolment_shows_a_local_qr_code_and_a_right_code_confirms_the_device(client):
    olivia = money_staff()
    client.force_login(olivia)
    page = client.get(SETUP, {"next": CHANGELIST})
    html = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in html and "<path" in html
    # Nothing is loaded from elsewhere: no external image, script or style.
    assert not re.search(r"""(src|href)=["']https?://""", html)
    device = TOTPDevice.objects.get(user=olivia)
    assert not device.confirmed
    secret = page.context["secret"]
    assert secret in html

    wrong = client.post(SETUP, {"otp_token": "000000", "next": CHANGELIST})
    assert wrong.status_code == 200 and "not the current one" in wrong.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    # A wrong code throttles the device for a moment (django-otp): let it pass.
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0)

    done = client.post(SETUP, {"otp_token": code_of(device), "next": CHANGELIST})
    assert done.status_code == 302 and done.url == CHANGELIST
    device.refresh_from_db()
    assert device.confirmed
    assert client.get(CHANGELIST).status_code == 200
    # Enrolled: the page no longer hands out a key.
    assert client.get(SETUP).url.startswith(VERIFY)


def test_the_code_page_lets_in_with_the_current_code_once(client):
    olivia = money_staff()
    device = totp_device(olivia)
    client.force_login(olivia)
    assert client.post(VERIFY, {"otp_token": "123456", "next": CHANGELIST}).status_code == 200
    device.refresh_from_db()
    code = code_of(device)
    # A wrong code throttles the device for a moment (django-otp): let it pass.
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0)
    response = client.post(VERIFY, {"otp_token": code, "next": CHANGELIST})
    assert response.status_code == 302 and response.url == CHANGELIST
    assert client.get(CHANGELIST).status_code == 200
    # The same code cannot open a second session.
    other = type(client)()
    other.force_login(olivia)
    again = other.post(VERIFY, {"otp_token": code, "next": CHANGELIST})
    assert again.status_code == 200
    assert other.get(CHANGELIST).url.startswith(VERIFY)


def test_after_many_wrong_codes_even_the_right_one_waits_with_a_clear_message(client):
    olivia = money_staff()
    device = totp_device(olivia)
    client.force_login(olivia)
    client.post(VERIFY, {"otp_token": "000000"})
    # Ten failures: django-otp's wait doubles with each one (here about 8 minutes).
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=10)
    response = client.post(VERIFY, {"otp_token": code_of(device)})
    assert "Too many wrong codes" in response.content.decode()
    assert client.get(CHANGELIST).url.startswith(VERIFY)


def stale(client, seconds: int = 600) -> None:
    session = client.session
    session[VERIFIED_AT_SESSION_KEY] = int(time.time()) - seconds
    session.save()


def test_lifting_the_emergency_stop_needs_a_fresh_code_setting_it_does_not(client, world):
    olivia = money_staff()
    login_verified(client, olivia)
    stale(client)
    toggle = reverse("admin:trading_emergency_stop_toggle")
    # Stopping stays one click away.
    client.post(toggle, {"active": "1", "reason": "halt"}, HTTP_REFERER=CHANGELIST)
    assert EmergencyStop.objects.get().active

    refused = client.post(toggle, {"active": "0"}, HTTP_REFERER=f"http://testserver{CHANGELIST}")
    assert refused.status_code == 302 and refused.url.startswith(VERIFY)
    assert EmergencyStop.objects.get().active
    change = reverse("admin:trading_emergencystop_change", args=[EmergencyStop.SINGLETON_ID])
    refused = client.post(change, {"reason": "lift"})
    assert refused.url.startswith(VERIFY)
    assert EmergencyStop.objects.get().active

    device = TOTPDevice.objects.get(user=olivia)
    assert client.post(VERIFY, {"otp_token": code_of(device)}).status_code == 302
    client.post(toggle, {"active": "0"})
    assert not EmergencyStop.objects.get().active


def test_an_override_needs_a_fresh_code(client):
    olivia = money_staff()
    EmergencyStopFactory()
    proposal = TradeProposalFactory(user=PolicyFactory().user, approved=True)
    url = reverse("admin:trading_tradeproposal_override", args=[proposal.pk])
    data = {"override_cooldown": "on", "reason": "known market move"}
    login_verified(client, olivia)
    stale(client)
    refused = client.post(url, data)
    assert refused.url.startswith(VERIFY)
    assert not TradeProposal.objects.get(pk=proposal.pk).override_cooldown

    device = TOTPDevice.objects.get(user=olivia)
    client.post(VERIFY, {"otp_token": code_of(device)})
    assert client.post(url, data).status_code == 302
    assert TradeProposal.objects.get(pk=proposal.pk).override_cooldown


def test_a_session_from_another_users_device_is_not_verified(client):
    olivia, mallory = money_staff("olivia"), money_staff("mallory")
    client.force_login(olivia)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = totp_device(mallory).persistent_id
    session.save()
    assert client.get(CHANGELIST).status_code == 302


def test_staff_signed_in_by_session_cannot_write_through_the_api_without_a_code(client):
    olivia = money_staff()
    PolicyFactory(user=olivia)
    proposal = TradeProposalFactory(user=olivia)
    client.force_login(olivia)
    url = f"/api/v1/proposals/{proposal.pk}/approve/"
    refused = client.post(url)
    assert refused.status_code == 403 and refused.json()["code"] == "TWO_FACTOR_REQUIRED"
    assert TradeProposal.objects.get(pk=proposal.pk).status == TradeProposal.Status.PENDING
    assert client.get("/api/v1/proposals/").status_code == 200  # reading is not refused
    # The control: the same request from a verified session approves.
    verified = type(client)()
    login_verified(verified, olivia)
    assert verified.post(url).status_code == 200
    assert TradeProposal.objects.get(pk=proposal.pk).status == TradeProposal.Status.APPROVED
