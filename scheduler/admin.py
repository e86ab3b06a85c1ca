from django.contrib import admin

from .models import ScanJob


@admin.register(ScanJob)
class ScanJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "markets",
        "enabled",
        "next_run_at",
        "locked_by",
        "lock_expires_at",
    )
    list_filter = ("enabled",)
    list_select_related = ("user",)
