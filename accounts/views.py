"""The console's two-factor pages: enrolment (a QR code, drawn here) and the code page."""

from __future__ import annotations

from base64 import b32encode

import qrcode
import qrcode.image.svg
from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from accounts import services
from accounts.selectors import user_has_confirmed_device


class CodeForm(forms.Form):
    otp_token = forms.CharField(
        label="Code from your authenticator app",
        min_length=6,
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("admin:index")


def _with_next(url_name: str, next_url: str) -> str:
    return f"{reverse(url_name)}?{urlencode({'next': next_url})}"


def qr_svg(data: str) -> str:
    """The QR code of `data` as inline SVG, made in this process (nothing fetched)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")


def _page(request, template: str, context: dict) -> TemplateResponse:
    return TemplateResponse(
        request,
        template,
        {**admin.site.each_context(request), "next": _next_url(request), **context},
    )


@sensitive_post_parameters("otp_token")
@never_cache
@staff_member_required
def two_factor_setup(request):
    if user_has_confirmed_device(request.user):
        return redirect(_with_next("accounts:two_factor_verify", _next_url(request)))
    device = services.totp_device_enrolment_start(user=request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["otp_token"]
        problem = services.totp_device_confirm(request=request, device=device, code=code)
        if problem is None:
            request.session.cycle_key()
            return redirect(_next_url(request))
        form.add_error("otp_token", problem)
    context = {
        "title": "Set up two-factor sign-in",
        "form": form,
        "qr_svg": mark_safe(qr_svg(device.config_url)),  # noqa: S308 - SVG made by qrcode here
        # For apps without a camera: the same key, typed in (base32).
        "secret": b32encode(device.bin_key).decode(),
    }
    return _page(request, "accounts/two_factor_setup.html", context)


@sensitive_post_parameters("otp_token")
@never_cache
@staff_member_required
def two_factor_verify(request):
    if not user_has_confirmed_device(request.user):
        return redirect(_with_next("accounts:two_factor_setup", _next_url(request)))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        problem = services.two_factor_verify(request=request, code=form.cleaned_data["otp_token"])
        if problem is None:
            request.session.cycle_key()
            return redirect(_next_url(request))
        form.add_error("otp_token", problem)
    return _page(
        request, "accounts/two_factor_verify.html", {"title": "Enter your code", "form": form}
    )
