"""Thin Celery interfaces: take ids, call one service."""

import uuid
from dataclasses import asdict

from celery import shared_task

from scheduler.services import (
    scan_job_run,
    scan_jobs_dispatch_due,
    scan_jobs_release_expired,
    scan_owner,
)


@shared_task
def dispatch_due_scans() -> int:
    return scan_jobs_dispatch_due(owner=scan_owner())


@shared_task
def run_scan_job(job_id: int, lock_token: str) -> dict:
    return asdict(scan_job_run(job_id=job_id, lock_token=uuid.UUID(lock_token)))


@shared_task
def release_expired_locks() -> int:
    return scan_jobs_release_expired()
