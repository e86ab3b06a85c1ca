from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.scoping import UserOwnedQuerySet


class ScanJob(models.Model):
    """A recurring market scan for one user, claimed by one worker at a time through a lease.

    The lease is (locked_by, lock_token, lock_expires_at): all set while held, all empty when
    free. An expired lease counts as free, which is how a crashed worker's job comes back.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scan_jobs"
    )
    markets = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    interval_minutes = models.PositiveIntegerField(default=15)
    next_run_at = models.DateTimeField(default=timezone.now)
    locked_at = models.DateTimeField(null=True, blank=True)
    # NULL, like the other lease fields, means "no lease" (see scan_jobs_lease_whole).
    locked_by = models.CharField(max_length=100, blank=True, null=True)  # noqa: DJ001
    lock_expires_at = models.DateTimeField(null=True, blank=True)
    lock_token = models.UUIDField(null=True, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "scan_jobs"
        constraints = [
            models.CheckConstraint(
                condition=Q(interval_minutes__gte=1),
                name="scan_jobs_interval_positive",
                violation_error_code="SCAN_INTERVAL_NOT_POSITIVE",
                violation_error_message="The scan interval must be at least 1 minute.",
            ),
            # A lease is whole or absent: never a token without an owner or an expiry.
            models.CheckConstraint(
                condition=Q(
                    locked_by__isnull=True,
                    lock_token__isnull=True,
                    lock_expires_at__isnull=True,
                    locked_at__isnull=True,
                )
                | Q(
                    locked_by__isnull=False,
                    lock_token__isnull=False,
                    lock_expires_at__isnull=False,
                    locked_at__isnull=False,
                ),
                name="scan_jobs_lease_whole",
                violation_error_code="SCAN_LEASE_PARTIAL",
            ),
        ]
        indexes = [
            # The dispatcher's query: enabled jobs that are due.
            models.Index(fields=["next_run_at"], condition=Q(enabled=True), name="scan_jobs_due"),
        ]

    def __str__(self) -> str:
        return f"Scan job #{self.pk} of {self.user} ({', '.join(self.markets) or 'no markets'})"
