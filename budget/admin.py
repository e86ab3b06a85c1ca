from django.contrib import admin

from core.admin import ReadOnlyAdmin

from .models import GptUsageLog


@admin.register(GptUsageLog)
class GptUsageLogAdmin(ReadOnlyAdmin):
    """The ledger is facts written by the budget service: read-only here."""

    list_display = (
        "created_at",
        "user",
        "model",
        "reason",
        "status",
        "error",
        "prompt_tokens",
        "completion_tokens",
    )
    list_filter = ("status", "model", "reason")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
