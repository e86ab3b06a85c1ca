"""Reads on scan jobs."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q
from django.utils import timezone

from scheduler.errors import ScanJobNotFound
from scheduler.models import ScanJob


def scan_jobs_status(*, now: datetime | None = None) -> dict:
    """How the scan queue stands: due, leased, expired leases waiting for recovery, failing."""
    now = now or timezone.now()
    leased = Q(lock_token__isnull=False)
    return ScanJob.objects.aggregate(
        jobs_enabled=Count("pk", filter=Q(enabled=True)),
        due=Count(
            "pk",
            filter=Q(enabled=True, next_run_at__lte=now)
            & (Q(lock_token__isnull=True) | Q(lock_expires_at__lte=now)),
        ),
        leased=Count("pk", filter=leased & Q(lock_expires_at__gt=now)),
        expired_leases=Count("pk", filter=leased & Q(lock_expires_at__lte=now)),
        failing=Count("pk", filter=Q(consecutive_failures__gt=0)),
    )


def scan_job_list(*, user):
    return ScanJob.objects.for_user(user).order_by("pk")


def scan_job_get(*, user, job_id: int) -> ScanJob:
    job = ScanJob.objects.for_user(user).filter(pk=job_id).first()
    if job is None:
        raise ScanJobNotFound(f"No scan job #{job_id}.")
    return job


def scan_last_finished(*, user) -> dict | None:
    """The user's most recently finished scan, or None before the first."""
    last = (
        ScanJob.objects.for_user(user)
        .filter(last_finished_at__isnull=False)
        .order_by("-last_finished_at")
        .values("id", "last_finished_at", "last_error")
        .first()
    )
    return last and {
        "job_id": last["id"],
        "finished_at": last["last_finished_at"],
        "error": last["last_error"],
    }
