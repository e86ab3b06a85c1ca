from django.conf import settings
from django.db import models
from django.db.models import Q

from core.scoping import UserOwnedQuerySet


class GptUsageLog(models.Model):
    """One row per LLM call: a fact, not a counter.

    A call is admitted by inserting a RESERVED row and closed as SUCCEEDED or FAILED.
    RESERVED, SUCCEEDED and FAILED rows count against the budget; REFUSED rows record an
    admission that the budget turned down and count for nothing.
    """

    class Status(models.TextChoices):
        RESERVED = "RESERVED"
        SUCCEEDED = "SUCCEEDED"
        FAILED = "FAILED"
        REFUSED = "REFUSED"

    COUNTED = (Status.RESERVED, Status.SUCCEEDED, Status.FAILED)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gpt_usage"
    )
    scan_job = models.ForeignKey(
        "scheduler.ScanJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.CharField(max_length=100)
    reason = models.CharField(max_length=50)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimate = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESERVED)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "gpt_usage_log"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["RESERVED", "SUCCEEDED", "FAILED", "REFUSED"]),
                name="gpt_usage_log_status_valid",
                violation_error_code="USAGE_STATUS_INVALID",
            ),
            models.CheckConstraint(
                condition=Q(status="RESERVED") | Q(finished_at__isnull=False),
                name="gpt_usage_log_closed_has_finish_time",
                violation_error_code="USAGE_FINISH_TIME_MISSING",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "created_at"], name="gpt_usage_log_user_created"),
            # The admin's date filter and the retention sweep.
            models.Index(fields=["created_at"], name="gpt_usage_log_created"),
            # The abandoned-reservation cleanup looks only at the few open rows.
            models.Index(
                fields=["created_at"],
                condition=Q(status="RESERVED"),
                name="gpt_usage_log_reserved",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} call for {self.user} ({self.status})"


class GptBudgetLock(models.Model):
    """One row per user that admissions lock, so two admissions for one user never overlap.

    Updating this row first serialises admissions on PostgreSQL (a row lock) and on SQLite
    (the write lock is taken before the count), so the count-then-insert is exact on both.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    admissions = models.PositiveBigIntegerField(default=0)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "gpt_budget_locks"

    def __str__(self) -> str:
        return f"Budget lock of user #{self.user_id}"
