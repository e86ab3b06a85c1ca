from django.contrib import admin

from .models import GptUsageLog


@admin.register(GptUsageLog)
class GptUsageLogAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
