"""Writes on the LLM usage ledger: admit a call, close it, close what a crash left open.

Limits come from the caller (the budget knows nothing of policies). A call is admitted by a
RESERVED row inserted under a per-user lock, so concurrent admissions for one user are
counted one after the other and a limit of N lets exactly N calls through.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from budget.errors import BudgetError, BudgetExhausted, UsageStateConflict
from budget.models import GptBudgetLock, GptUsageLog
from budget.selectors import budget_usage_counts
from core.counters import counter_add
from core.logs import log_event

logger = logging.getLogger(__name__)

# Longer than any call can take (LLM timeout < task hard limit < this). A reservation this
# old belongs to a process that died; it is closed as FAILED and keeps counting as spent,
# because the call may have reached the LLM before the crash.
RESERVATION_TIMEOUT = timedelta(minutes=10)
ABANDONED = "RESERVATION_ABANDONED"
MAX_ERROR_LENGTH = 2000


def _budget_lock(*, user_id: int) -> None:
    """Takes the user's admission lock for the rest of the transaction.

    An UPDATE, not a SELECT FOR UPDATE: it locks the row on PostgreSQL and takes SQLite's
    write lock up front, so the count that follows cannot interleave with another admission.
    """
    locked = GptBudgetLock.objects.filter(user_id=user_id)
    if not locked.update(admissions=F("admissions") + 1):
        # First admission ever: a concurrent first admission inserts the same row, one wins.
        GptBudgetLock.objects.bulk_create([GptBudgetLock(user_id=user_id)], ignore_conflicts=True)
        locked.update(admissions=F("admissions") + 1)


def budget_admit(
    *,
    user_id: int,
    daily_limit: int,
    hourly_limit: int,
    model: str,
    reason: str,
    scan_job_id: int | None = None,
    tokens_estimate: int,
) -> GptUsageLog:
    """A RESERVED row if both limits allow one more call; otherwise a REFUSED row and
    BudgetExhausted (DAILY_BUDGET_EXHAUSTED or HOURLY_BUDGET_EXHAUSTED)."""
    with transaction.atomic(durable=True):
        _budget_lock(user_id=user_id)
        now = timezone.now()
        today, this_hour = budget_usage_counts(user_id=user_id, now=now)
        if today >= daily_limit:
            refusal = "DAILY_BUDGET_EXHAUSTED"
        elif this_hour >= hourly_limit:
            refusal = "HOURLY_BUDGET_EXHAUSTED"
        else:
            refusal = ""
        # Every field is built here, not taken from outside: the table's constraints guard it,
        # and skipping full_clean keeps the per-user lock short.
        usage = GptUsageLog.objects.create(
            user_id=user_id,
            scan_job_id=scan_job_id,
            model=model,
            reason=reason,
            tokens_estimate=tokens_estimate,
            status=GptUsageLog.Status.REFUSED if refusal else GptUsageLog.Status.RESERVED,
            error=refusal,
            finished_at=now if refusal else None,
        )
    if refusal:
        counter_add("llm_calls", labels=(GptUsageLog.Status.REFUSED, model))
        counter_add("llm_budget_refusals", labels=(refusal,))
        log_event(
            logger,
            "budget.refused",
            level=logging.WARNING,
            user_id=user_id,
            usage_id=usage.pk,
            job_id=scan_job_id,
            code=refusal,
        )
        raise BudgetExhausted(
            f"The LLM budget allows no call now: {today}/{daily_limit} today, "
            f"{this_hour}/{hourly_limit} in the last hour.",
            code=refusal,
            extra={
                "usage_id": usage.pk,
                "used_today": today,
                "daily_limit": daily_limit,
                "used_this_hour": this_hour,
                "hourly_limit": hourly_limit,
            },
        )
    return usage


def budget_close(
    *,
    usage_id: int,
    status: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    error: str = "",
) -> None:
    """RESERVED -> SUCCEEDED or FAILED with the tokens actually used, by compare-and-set."""
    if status not in (GptUsageLog.Status.SUCCEEDED, GptUsageLog.Status.FAILED):
        raise BudgetError(
            f"A call closes as SUCCEEDED or FAILED, not {status!r}.", code="USAGE_STATUS_INVALID"
        )
    closed = GptUsageLog.objects.filter(pk=usage_id, status=GptUsageLog.Status.RESERVED).update(
        status=status,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        error=error[:MAX_ERROR_LENGTH],
        finished_at=timezone.now(),
    )
    if not closed:
        current = GptUsageLog.objects.filter(pk=usage_id).values_list("status", flat=True).first()
        raise UsageStateConflict(
            f"Usage #{usage_id} is {current or 'missing'}, not RESERVED.",
            extra={"usage_id": usage_id, "status": current},
        )
    model = GptUsageLog.objects.filter(pk=usage_id).values_list("model", flat=True).first()
    _closed_count(status=status, model=model or "", calls=1)
    counter_add("llm_tokens", prompt_tokens or 0, labels=("prompt", model or ""))
    counter_add("llm_tokens", completion_tokens or 0, labels=("completion", model or ""))


def _closed_count(*, status: str, model: str, calls: int) -> None:
    counter_add("llm_calls", calls, labels=(status, model))


def budget_reservations_abandon(*, older_than: timedelta = RESERVATION_TIMEOUT) -> int:
    """Closes reservations a dead process left open as FAILED (RESERVATION_ABANDONED).

    They stay counted: the call may have reached the LLM, so it is treated as spent.
    """
    now = timezone.now()
    abandoned = GptUsageLog.objects.filter(
        status=GptUsageLog.Status.RESERVED, created_at__lt=now - older_than
    )
    closed = 0
    for model in set(abandoned.values_list("model", flat=True)):
        count = abandoned.filter(model=model).update(
            status=GptUsageLog.Status.FAILED, error=ABANDONED, finished_at=now
        )
        _closed_count(status=GptUsageLog.Status.FAILED, model=model, calls=count)
        closed += count
    return closed
