from django.contrib import admin

from core.admin import ScaledAdmin
from scheduler.services import scan_job_lease_break

from .models import ScanJob


@admin.register(ScanJob)
class ScanJobAdmin(ScaledAdmin):
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
    actions = ("release_lease",)
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

    @admin.action(
        description="Release the lease of the selected jobs (stuck scans)", permissions=["change"]
    )
    def release_lease(self, request, queryset):
        released = sum(
            scan_job_lease_break(job_id=job_id, actor=request.user)
            for job_id in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"Released {released} lease(s); those jobs are due now.")
