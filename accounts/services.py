"""Writes of accounts: API tokens and two-factor enrolment. Each token change is audited."""

from __future__ import annotations

import time
from datetime import timedelta

import django_otp
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.audit import audit_record
from accounts.errors import TokenInvalid
from accounts.models import ApiToken, AuditEntry
from accounts.selectors import totp_device_pending

# The session key holding when this session last entered a valid TOTP code (Unix seconds).
VERIFIED_AT_SESSION_KEY = "otp_verified_at"
MAX_TOKEN_DAYS = 3650


def _token_audit_view(token: ApiToken) -> dict:
    return {
        "user": token.user.get_username(),
        "name": token.name,
        "scope": token.scope,
        "token_key": token.token_key,
        "expiry": token.expiry,
    }


@transaction.atomic
def api_token_create(
    *, user, name: str, scope: str, expires_in_days: int | None, actor=None
) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the token itself, which is shown once and
    never stored. `expires_in_days` None: the default lifetime (REST_KNOX TOKEN_TTL)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise TokenInvalid(
            "A token needs a name of 1 to 100 characters.", code="TOKEN_NAME_INVALID"
        )
    if scope not in ApiToken.Scope.values:
        raise TokenInvalid(
            f"The scope is read or trade, not {scope!r}.",
            code="TOKEN_SCOPE_INVALID",
            extra={"scopes": ApiToken.Scope.values},
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise TokenInvalid(
            f"A token expires in 1 to {MAX_TOKEN_DAYS} days.", code="TOKEN_EXPIRY_INVALID"
        )
    kwargs = {} if expires_in_days is None else {"expiry": timedelta(days=expires_in_days)}
    token, plaintext = ApiToken.objects.create(user=user, name=name, scope=scope, **kwargs)
    audit_record(
        actor=actor,
        action=AuditEntry.Action.TOKEN_CREATE,
        subject=f"API token {token.token_key}… of {user.get_username()}",
        after=_token_audit_view(token),
    )
    return token, plaintext


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor=None) -> None:
    audit_record(
        actor=actor,
        action=AuditEntry.Action.TOKEN_REVOKE,
        subject=f"API token {token.token_key}… of {token.user.get_username()}",
        before=_token_audit_view(token),
    )
    token.delete()


def api_token_touch(*, token: ApiToken) -> None:
    """Records the token's use, at most once a minute (not a write per request)."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def totp_device_enrolment_start(*, user) -> TOTPDevice:
    """The unconfirmed TOTP device the enrolment page shows, created with a fresh key."""
    device = totp_device_pending(user)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="console", confirmed=False)
    return device


def two_factor_session_verified(*, request, device) -> None:
    """Marks this session as verified with `device`, now (django-otp's session login)."""
    django_otp.login(request, device)
    request.session[VERIFIED_AT_SESSION_KEY] = int(time.time())


TOO_MANY_CODES = "Too many wrong codes: wait a minute, then enter the current code."
WRONG_CODE = "That code is not the current one."


@transaction.atomic
def totp_device_confirm(*, request, device: TOTPDevice, code: str) -> str | None:
    """Confirms an enrolment when `code` is the device's current one; the session is then
    verified too. Returns None on success, else why not (the device's throttling applies)."""
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
    if device.confirmed:
        return "This device is already confirmed."
    if not device.verify_is_allowed()[0]:
        return TOO_MANY_CODES
    if not device.verify_token(code.strip()):
        return WRONG_CODE
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    two_factor_session_verified(request=request, device=device)
    return None


def two_factor_verify(*, request, code: str) -> str | None:
    """Checks `code` against the user's confirmed TOTP device; on success the session is
    verified. Returns None on success, else why not (a wrong code, or too many of them:
    the device then refuses every code for a while, longer after each failure)."""
    device = TOTPDevice.objects.filter(user=request.user, confirmed=True).order_by("-id").first()
    if device is None:
        return "No confirmed device: enrol one first."
    allowed, _ = device.verify_is_allowed()
    if not allowed:
        return TOO_MANY_CODES
    verified = django_otp.verify_token(request.user, device.persistent_id, code.strip())
    if verified is None:
        return WRONG_CODE
    two_factor_session_verified(request=request, device=verified)
    return None
