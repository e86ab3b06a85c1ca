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
        "consecutive_failures",
        "last_error",
    )
    list_filter = ("enabled",)
    list_select_related = ("user",)
    # Leases are written only by the dispatcher and the workers (compare-and-set on the token).
    readonly_fields = (
        "locked_at",
        "locked_by",
        "lock_expires_at",
        "lock_token",
        "last_started_at",
        "last_finished_at",
        "last_error",
        "consecutive_failures",
    )
