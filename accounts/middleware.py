"""Two-factor sign-in for staff who may move money, and the client address for the audit log.

Staff who may approve, execute, override or use the emergency stop (or are superusers) reach
no console page until this session entered a TOTP code: without a confirmed device they are
sent to enrolment, with one to the code page. Lifting the emergency stop and overriding a
guard also need a code entered within FRESH_AUTH_SECONDS. The same staff signed in by
session cannot write through the API either until the session entered a code.
"""

from __future__ import annotations

import time

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from accounts.audit import client_address_reset, client_address_set
from accounts.selectors import user_has_confirmed_device, user_may_move_money
from accounts.services import VERIFIED_AT_SESSION_KEY

# The admin pages anyone reaches without a code: signing in and out.
OPEN_ADMIN_VIEWS = {"admin:login", "admin:logout"}


def _lifts_stop(request) -> bool:
    # The console's stop button sends active=1 to stop; the stop's form leaves the box out.
    return request.POST.get("active") not in ("1", "on", "true", "True")


# Console views whose POST needs a fresh code: (view name, whether this POST needs it, why).
FRESH_CODE_VIEWS = {
    "admin:trading_emergency_stop_toggle": (_lifts_stop, "Lifting the emergency stop"),
    "admin:trading_emergencystop_change": (_lifts_stop, "Lifting the emergency stop"),
    "admin:trading_tradeproposal_override": (lambda request: True, "Overriding a guard"),
}


def session_code_is_fresh(request) -> bool:
    verified_at = request.session.get(VERIFIED_AT_SESSION_KEY)
    return verified_at is not None and time.time() - verified_at <= settings.FRESH_AUTH_SECONDS


def _with_next(url_name: str, next_url: str) -> str:
    return f"{reverse(url_name)}?{urlencode({'next': next_url})}"


class StaffTwoFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = client_address_set(get_client_ip_address(request))
        try:
            return self.get_response(request)
        finally:
            client_address_reset(token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith("/api/"):
            return self._api_refusal(request)
        match = request.resolver_match
        if not request.path.startswith(reverse("admin:index")) or (
            match is not None and match.view_name in OPEN_ADMIN_VIEWS
        ):
            return None
        user = request.user
        if not user_may_move_money(user):
            return None
        if not user.is_verified():
            if not user_has_confirmed_device(user):
                return redirect(_with_next("accounts:two_factor_setup", request.get_full_path()))
            return redirect(_with_next("accounts:two_factor_verify", request.get_full_path()))
        rule = FRESH_CODE_VIEWS.get(match.view_name) if match is not None else None
        if (
            request.method == "POST"
            and rule
            and rule[0](request)
            and not session_code_is_fresh(request)
        ):
            minutes = max(1, settings.FRESH_AUTH_SECONDS // 60)
            messages.warning(
                request,
                f"{rule[1]} needs a code entered in the last {minutes} minute(s): enter the "
                "current code, then do it again.",
            )
            # The POST is not replayed: back to the page it came from, once verified.
            back = request.META.get("HTTP_REFERER", "")
            if not url_has_allowed_host_and_scheme(
                back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            ):
                back = reverse("admin:index")
            return redirect(_with_next("accounts:two_factor_verify", back))
        return None

    @staticmethod
    def _api_refusal(request):
        # Only the session's user is known here; a token's user is DRF's (tokens have scopes).
        user = request.user
        if request.method in ("GET", "HEAD", "OPTIONS") or not user_may_move_money(user):
            return None
        if user.is_verified():
            return None
        return JsonResponse(
            {
                "code": "TWO_FACTOR_REQUIRED",
                "message": "Staff who may move money write through the API only from a "
                "session that entered a TOTP code (/accounts/two-factor/verify/).",
                "extra": {},
            },
            status=403,
        )
