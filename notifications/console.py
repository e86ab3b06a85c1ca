"""The console's page of the signed-in user's own notification settings, with the button
that gives a one-time code for linking a Telegram chat."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse

from notifications import selectors
from notifications.telegram import TelegramOff, telegram_enabled, telegram_link_code_create


def notification_settings_view(request):
    row = selectors.notification_settings_get(user=request.user)
    link, error = None, None
    if request.method == "POST":
        try:
            link = telegram_link_code_create(user=request.user)
        except TelegramOff as refused:
            error = refused.message
    context = {
        **admin.site.each_context(request),
        "title": "Your notifications",
        "row": row,
        "telegram_enabled": telegram_enabled(),
        "link": link,
        "error": error,
    }
    return TemplateResponse(request, "admin/notifications/settings.html", context)
