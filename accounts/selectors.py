"""Reads of accounts: who must use two-factor sign-in, their devices, API tokens."""

from __future__ import annotations

from django.db.models import QuerySet
from django_otp import devices_for_user
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import ApiToken

# Whoever holds one of these (or is superuser) moves money or stops trading from the console,
# so signs in there with a TOTP code too.
MONEY_PERMISSIONS = (
    "trading.approve_proposal",
    "trading.execute_proposal",
    "trading.override_guards",
    "trading.emergency_stop",
)


def user_may_move_money(user) -> bool:
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and (user.is_superuser or any(user.has_perm(perm) for perm in MONEY_PERMISSIONS))
    )


def user_has_confirmed_device(user) -> bool:
    return any(True for _ in devices_for_user(user, confirmed=True))


def totp_device_pending(user) -> TOTPDevice | None:
    """The user's enrolment in progress: an unconfirmed TOTP device, if any."""
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()


def api_tokens_list(*, user=None) -> QuerySet[ApiToken]:
    tokens = ApiToken.objects.select_related("user").order_by("user__username", "-created")
    return tokens if user is None else tokens.filter(user=user)
