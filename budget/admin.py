from django.contrib import admin

from .models import GptUsageLog


@admin.register(GptUsageLog)
class GptUsageLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "model", "reason", "status", "prompt_tokens")
    list_filter = ("status", "model")
    list_select_related = ("user",)
