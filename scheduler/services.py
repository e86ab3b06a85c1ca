"""Scan jobs: leases, dispatch, recovery and the scan pipeline.

A lease is (lock_token, locked_by, locked_at, lock_expires_at). Every write on a leased job
is a compare-and-set on its token, so a worker whose lease expired and was taken by another
can no longer extend, store or release anything. An expired lease counts as free.

A claim's token is single-use: the run swaps it for its own token when it starts, so a task
delivered twice (acks_late after a crash) runs the job once. While leased, a job's
next_run_at is its lease's expiry: the moment it comes back if its run dies.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from budget.errors import BudgetExhausted
from budget.models import GptUsageLog
from budget.services import budget_admit, budget_close
from core.counters import counter_add
from core.errors import DomainError
from core.logs import log_event
from evaluation.models import AdvisorDecision
from evaluation.selectors import advisor_decision_unchanged, advisor_track_record
from evaluation.services import advisor_decision_record
from exchange.readonly import ReadonlyClient
from notifications.services import Event, notification_enqueue
from scheduler.advisors import (
    Advice,
    advice_parse,
    advisor_get,
    advisor_input,
    advisor_input_hash,
    advisor_limits,
)
from scheduler.errors import (
    AdvisorOutputInvalid,
    ScanError,
    ScanJobInvalid,
    ScanJobLocked,
    ScanLeaseLost,
)
from scheduler.market import market_snapshot_build
from scheduler.models import ScanJob
from trading.models import Policy, TradeProposal
from trading.selectors import (
    holdings_get,
    policy_get_for_user,
    proposal_pending_same,
    trading_status,
)
from trading.services import MARKET_PATTERN, proposal_create

logger = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)
RUN_SCAN_TASK = "scheduler.tasks.run_scan_job"
LEASE_EXPIRED = "SCAN_LEASE_EXPIRED"


def scan_owner() -> str:
    """Who holds a lease: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def lease_ttl() -> timedelta:
    # SCAN_LEASE_SECONDS is longer than the task's hard time limit: a live scan keeps its job.
    return timedelta(seconds=settings.SCAN_LEASE_SECONDS)


def _lease_free(now: datetime) -> Q:
    return Q(lock_token__isnull=True) | Q(lock_expires_at__lte=now)


def _lease_until(now: datetime, ttl: timedelta | None) -> dict:
    """A held lease's expiry. The job is next due then too: if this run dies, that is when
    the job comes back, and until then the dispatcher's index range never reads it."""
    expires = now + (ttl or lease_ttl())
    return {"lock_expires_at": expires, "next_run_at": expires}


def _lease_cleared() -> dict:
    return {"lock_token": None, "locked_by": None, "locked_at": None, "lock_expires_at": None}


def scan_job_delay(*, interval_minutes: int, failures: int) -> timedelta:
    """Until the next run: the interval, doubled for each failure in a row, capped at
    MAX_BACKOFF (but never shorter than the interval)."""
    interval = timedelta(minutes=interval_minutes)
    return max(interval, min(interval * 2 ** min(failures, 16), MAX_BACKOFF))


# --- leases ---------------------------------------------------------------------------------


def scan_jobs_claim_due(
    *, owner: str, limit: int, ttl: timedelta | None = None
) -> list[tuple[int, uuid.UUID]]:
    """Leases up to `limit` due, enabled jobs whose lease is free or expired: [(id, token)].

    SKIP LOCKED lets any number of dispatchers run at once; each job goes to one of them.
    """
    now = timezone.now()
    due = ScanJob.objects.filter(_lease_free(now), enabled=True, next_run_at__lte=now)
    with transaction.atomic(durable=True):
        rows = list(
            due.select_for_update(skip_locked=True)
            .order_by("next_run_at")
            .values_list("pk", "user_id", "locked_by", "lock_expires_at")[:limit]
        )
        if not rows:
            return []
        ids = [pk for pk, *_ in rows]
        # One fresh token for the batch: a lease is always checked as (job id, token), and
        # each job's run swaps it for a token of its own (scan_job_start).
        token = uuid.uuid4()
        # The filter again: on PostgreSQL the rows are locked and this always matches; on
        # SQLite (no row locks) it makes a lost race fail instead of claiming twice.
        claimed = due.filter(pk__in=ids).update(
            lock_token=token,
            locked_by=owner,
            locked_at=now,
            **_lease_until(now, ttl),
            updated_at=now,
        )
        if claimed != len(ids):
            counter_add("scan_lease_contention")
            raise ScanJobLocked("Another dispatcher claimed some of these jobs first.")
        _lock_recovered_notify(rows, now=now, recovered_by="claim")
    _claimed(ids, owner)
    return [(pk, token) for pk in ids]


def _claimed(job_ids: list[int], owner: str) -> None:
    counter_add("scan_jobs_claimed", len(job_ids))
    for job_id in job_ids:
        log_event(logger, "scan.claimed", job_id=job_id, owner=owner)


def _lock_recovered_notify(rows, *, now: datetime, recovered_by: str) -> None:
    """Tells each owner that a lease expired and was taken back: its holder died or overran.
    `rows` are (job id, user id, holder, expiry); a free job (no expiry) is not a recovery."""
    for job_id, user_id, holder, expired_at in rows:
        if expired_at is None:
            continue
        notification_enqueue(
            event=Event.SCAN_LOCK_RECOVERED,
            user_id=user_id,
            job_id=job_id,
            holder=holder,
            expired_at=expired_at.isoformat(),
            recovered_by=recovered_by,
            at=now.isoformat(),
        )


def scan_job_claim(*, job_id: int, owner: str, ttl: timedelta | None = None) -> uuid.UUID:
    """Leases one job now, due or not, if its lease is free or expired (a manual run)."""
    now = timezone.now()
    token = uuid.uuid4()
    claimed = ScanJob.objects.filter(_lease_free(now), pk=job_id).update(
        lock_token=token,
        locked_by=owner,
        locked_at=now,
        **_lease_until(now, ttl),
        updated_at=now,
    )
    if not claimed:
        holder = ScanJob.objects.filter(pk=job_id).values("locked_by", "lock_expires_at").first()
        if holder is None:
            raise ScanError(f"No scan job #{job_id}.", code="SCAN_JOB_NOT_FOUND", http_status=404)
        counter_add("scan_lease_contention")
        raise ScanJobLocked(
            f"Scan job #{job_id} is leased by {holder['locked_by']} until "
            f"{holder['lock_expires_at']:%Y-%m-%d %H:%M:%S}.",
            extra={"job_id": job_id},
        )
    _claimed([job_id], owner)
    return token


def scan_job_extend_lease(
    *, job_id: int, lock_token: uuid.UUID, ttl: timedelta | None = None
) -> None:
    """Pushes the lease's expiry out for a long scan; ScanLeaseLost if it is not ours."""
    now = timezone.now()
    if not ScanJob.objects.filter(pk=job_id, lock_token=lock_token).update(
        **_lease_until(now, ttl), updated_at=now
    ):
        raise ScanLeaseLost(f"Scan job #{job_id} is no longer leased with this token.")


def scan_job_start(
    *, job_id: int, lock_token: uuid.UUID, ttl: timedelta | None = None
) -> uuid.UUID | None:
    """Starts the run a claim allows, once: the claim's token is swapped for a new one.

    With acks_late a task can be delivered twice (a killed worker, a redelivery); the second
    delivery carries the spent token and finds nothing to run. None if the token is stale.
    """
    now = timezone.now()
    run_token = uuid.uuid4()
    started = ScanJob.objects.filter(pk=job_id, lock_token=lock_token).update(
        lock_token=run_token,
        **_lease_until(now, ttl),
        last_started_at=now,
        updated_at=now,
    )
    return run_token if started else None


def scan_job_release(
    *, job_id: int, lock_token: uuid.UUID, succeeded: bool, error: str = ""
) -> bool:
    """Frees the lease and schedules the next run (interval, or back-off after failures),
    only if the lease is still ours. False when it is not: someone else's lease is untouched.
    """
    job = ScanJob.objects.filter(pk=job_id).values("interval_minutes", "consecutive_failures")
    job = job.first()
    if job is None:
        return False
    failures = 0 if succeeded else job["consecutive_failures"] + 1
    now = timezone.now()
    delay = scan_job_delay(interval_minutes=job["interval_minutes"], failures=failures)
    released = ScanJob.objects.filter(pk=job_id, lock_token=lock_token).update(
        **_lease_cleared(),
        next_run_at=now + delay,
        last_finished_at=now,
        last_error=error,
        consecutive_failures=failures,
        updated_at=now,
    )
    if not released:
        logger.warning("scan job %s: lease lost before release; left as it is", job_id)
    return bool(released)


def scan_jobs_release_expired() -> int:
    """Frees leases whose holder died or overran (counted as a failure of that run).

    The jobs keep their next_run_at, so they are due at once. Claims already treat an
    expired lease as free; this makes the recovery visible and counted.
    """
    now = timezone.now()
    expired = ScanJob.objects.filter(lock_token__isnull=False, lock_expires_at__lte=now)
    with transaction.atomic():
        rows = list(
            expired.select_for_update(skip_locked=True).values_list(
                "pk", "user_id", "locked_by", "lock_expires_at"
            )
        )
        job_ids = [pk for pk, *_ in rows]
        released = expired.filter(pk__in=job_ids).update(
            **_lease_cleared(),
            last_error=LEASE_EXPIRED,
            consecutive_failures=F("consecutive_failures") + 1,
            updated_at=now,
        )
        _lock_recovered_notify(rows, now=now, recovered_by="sweep")
    if released:
        counter_add("scan_leases_expired", released)
        for job_id in job_ids:
            log_event(logger, "scan.lease_recovered", level=logging.WARNING, job_id=job_id)
    return released


def scan_jobs_dispatch_due(
    *, owner: str, limit: int | None = None, ttl: timedelta | None = None
) -> int:
    """Claims due jobs and sends one run_scan_job(job_id, token) per claim to the scan queue."""
    claims = scan_jobs_claim_due(owner=owner, limit=limit or settings.SCAN_DISPATCH_BATCH, ttl=ttl)
    # The claim has committed (its transaction is durable), so every task finds its lease.
    # If sending fails part way, the unsent leases expire and the jobs come back.
    for job_id, token in claims:
        current_app.send_task(RUN_SCAN_TASK, args=[job_id, str(token)])
    return len(claims)


# --- the scan pipeline ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScanOutcome:
    job_id: int
    status: str
    detail: str = ""
    proposal_id: int | None = None
    usage_id: int | None = None

    PROPOSED = "PROPOSED"
    NO_TRADE = "NO_TRADE"
    NO_MARKETS = "NO_MARKETS"
    UNCHANGED = "UNCHANGED"
    BUDGET_REFUSED = "BUDGET_REFUSED"
    OUTPUT_REJECTED = "OUTPUT_REJECTED"
    FAILED = "FAILED"
    LEASE_LOST = "LEASE_LOST"
    DUPLICATE = "DUPLICATE"  # the same market and side already awaits a decision

    @property
    def failed(self) -> bool:
        return self.status in (self.OUTPUT_REJECTED, self.FAILED)


def scan_job_run(*, job_id: int, lock_token: uuid.UUID) -> ScanOutcome:
    """One scan under the lease `lock_token`: read-only market data, one advisor call
    through the budget, and at most one PENDING proposal; then the lease is released.

    Every failure ends in an outcome, never an exception, and releases the lease (with a
    back-off for failures). A budget refusal reschedules the job as usual.
    """
    token = scan_job_start(job_id=job_id, lock_token=lock_token)
    if token is None:
        return _lease_lost(job_id, "The claim was spent or taken over.")
    try:
        outcome = _scan(job_id=job_id, lock_token=token)
    except ScanLeaseLost as error:
        return _lease_lost(job_id, str(error))
    except DomainError as error:
        outcome = ScanOutcome(job_id, ScanOutcome.FAILED, f"{error.code}: {error.message}")
    except Exception as error:
        logger.exception("scan job %s crashed", job_id)
        outcome = ScanOutcome(job_id, ScanOutcome.FAILED, f"SCAN_CRASHED: {error!r}")
    scan_job_release(
        job_id=job_id,
        lock_token=token,
        succeeded=not outcome.failed,
        error=""
        if outcome.status in (outcome.PROPOSED, outcome.NO_TRADE, outcome.UNCHANGED)
        else outcome.detail,
    )
    log_event(
        logger,
        "scan.refused" if outcome.status == outcome.BUDGET_REFUSED else "scan.finished",
        level=logging.WARNING if outcome.failed else logging.INFO,
        job_id=job_id,
        status=outcome.status,
        proposal_id=outcome.proposal_id,
        usage_id=outcome.usage_id,
        detail=outcome.detail[:200],
    )
    return outcome


def _lease_lost(job_id: int, detail: str) -> ScanOutcome:
    counter_add("scan_lease_contention")
    log_event(
        logger,
        "scan.refused",
        level=logging.WARNING,
        job_id=job_id,
        status="LEASE_LOST",
        detail=detail,
    )
    return ScanOutcome(job_id, ScanOutcome.LEASE_LOST, detail)


def _scan(*, job_id: int, lock_token: uuid.UUID) -> ScanOutcome:
    job = ScanJob.objects.select_related("user").get(pk=job_id)
    policy = policy_get_for_user(user=job.user)
    # A proposal outside the allowlist could never execute: do not spend a call on it.
    markets = [market for market in job.markets if market in policy.allowlist]
    if not markets:
        return ScanOutcome(job_id, ScanOutcome.NO_MARKETS, "SCAN_NO_ALLOWED_MARKETS")
    # Nor on a market that could not execute now (cooldown, caps): the advisor is told.
    not_now = markets_not_now(user=job.user, markets=markets)
    markets = [market for market in markets if market not in not_now]
    if not markets:
        return ScanOutcome(job_id, ScanOutcome.NO_MARKETS, "SCAN_NO_MARKET_TRADABLE_NOW")

    snapshot = market_snapshot_build(client=ReadonlyClient(), markets=markets)
    scan_job_extend_lease(job_id=job_id, lock_token=lock_token)

    advisor = advisor_get()
    limits = advisor_limits(policy, holdings=holdings_get(user=job.user), snapshot=snapshot)
    if not_now:
        limits["markets_not_tradable_now"] = not_now
    track_record = advisor_track_record(user_id=job.user_id, model=advisor.model, markets=markets)
    input_hash = advisor_input_hash(
        snapshot=snapshot,
        limits=limits,
        model=advisor.model,
        digits=settings.SCAN_UNCHANGED_DIGITS,
    )
    decided = _decision_recorder(
        job=job,
        advisor=advisor,
        prompt_input=advisor_input(snapshot=snapshot, limits=limits, track_record=track_record),
        input_hash=input_hash,
    )
    # Nothing material moved since the user's last answer: record it, spend nothing.
    if advisor_decision_unchanged(user_id=job.user_id, input_hash=input_hash):
        decided(AdvisorDecision.Decision.UNCHANGED)
        counter_add("llm_calls_skipped_unchanged")
        return ScanOutcome(job_id, ScanOutcome.UNCHANGED, "SNAPSHOT_UNCHANGED")
    try:
        usage = budget_admit(
            user_id=job.user_id,
            daily_limit=policy.gpt_daily_limit,
            hourly_limit=policy.gpt_hourly_limit,
            model=advisor.model,
            reason="scan",
            scan_job_id=job_id,
            tokens_estimate=advisor.tokens_estimate(
                snapshot=snapshot, limits=limits, track_record=track_record
            ),
        )
    except BudgetExhausted as refusal:
        notification_enqueue(
            event=Event.BUDGET_EXHAUSTED,
            user_id=job.user_id,
            code=refusal.code,
            message=refusal.message,
            scan_job_id=job_id,
            limits=refusal.extra,
            at=timezone.now().isoformat(),
        )
        return ScanOutcome(
            job_id, ScanOutcome.BUDGET_REFUSED, refusal.code, usage_id=refusal.extra["usage_id"]
        )

    reply = None
    try:
        reply = advisor.advise(snapshot=snapshot, limits=limits, track_record=track_record)
        advice = advice_parse(text=reply.text, markets=markets)
    except Exception as error:
        # The call counts whatever happened; its row is closed with what is known.
        reason = _advisor_error_text(error)
        budget_close(
            usage_id=usage.pk,
            status=GptUsageLog.Status.FAILED,
            prompt_tokens=reply.prompt_tokens if reply else None,
            completion_tokens=reply.completion_tokens if reply else None,
            error=reason,
        )
        decided(AdvisorDecision.Decision.REJECTED, reply=reply, reason=reason)
        if not isinstance(error, AdvisorOutputInvalid):
            raise
        logger.warning(
            "scan job %s: advisor output rejected (%s: %s): %.300r",
            job_id,
            error.extra["field"],
            error.message,
            reply.text,
        )
        return ScanOutcome(job_id, ScanOutcome.OUTPUT_REJECTED, reason, usage_id=usage.pk)
    budget_close(
        usage_id=usage.pk,
        status=GptUsageLog.Status.SUCCEEDED,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )
    if advice is None:
        decided(AdvisorDecision.Decision.NO_TRADE, reply=reply)
        return ScanOutcome(job_id, ScanOutcome.NO_TRADE, reply.text[:500], usage_id=usage.pk)
    try:
        proposal = _scan_proposal_store(
            job=job,
            lock_token=lock_token,
            advice=advice,
            price=snapshot[advice.market]["last"],
            decided=lambda proposal: decided(
                AdvisorDecision.Decision.PROPOSE, reply=reply, proposal=proposal, advice=advice
            ),
        )
    except ScanLeaseLost as error:
        decided(AdvisorDecision.Decision.REJECTED, reply=reply, reason=f"{error.code}: {error}")
        raise
    if isinstance(proposal, str):  # not stored: the same one is pending
        decided(AdvisorDecision.Decision.REJECTED, reply=reply, reason=proposal)
        return ScanOutcome(job_id, ScanOutcome.DUPLICATE, proposal, usage_id=usage.pk)
    return ScanOutcome(
        job_id,
        ScanOutcome.PROPOSED,
        f"{advice.side} {advice.amount_eur} EUR of {advice.market} at {advice.confidence}%",
        proposal_id=proposal.pk,
        usage_id=usage.pk,
    )


def markets_not_now(*, user, markets: list[str]) -> dict[str, str]:
    """The markets a proposal could not execute on now, with why: every market once a cap
    is reached, a market whose asset is in cooldown until its end. The windows and counts
    are the ones preflight uses (trading_status)."""
    status = trading_status(user=user)
    if status["trades_today"] >= status["max_daily_trades"]:
        return dict.fromkeys(markets, "DAILY_CAP_REACHED")
    if status["trades_this_hour"] >= status["max_trades_per_hour"]:
        return dict.fromkeys(markets, "HOURLY_CAP_REACHED")
    cooling = {c["asset"]: c["until"] for c in status["active_cooldowns"]}
    return {
        market: f"COOLDOWN_ACTIVE until {cooling[market.split('-', 1)[0]].isoformat()}"
        for market in markets
        if market.split("-", 1)[0] in cooling
    }


def _advisor_error_text(error: Exception) -> str:
    """CODE: [field: ]message, as the budget row and the job's last_error record it."""
    if isinstance(error, AdvisorOutputInvalid):
        return f"{error.code}: {error.extra['field']}: {error.message}"
    if isinstance(error, DomainError):
        return f"{error.code}: {error.message}"
    return f"ADVISOR_CRASHED: {error!r}"


def _decision_recorder(*, job: ScanJob, advisor, prompt_input: dict, input_hash: str = ""):
    """Records this scan's advisor decision: one call per scan that reached the advisor."""

    def decided(decision: str, *, reply=None, reason: str = "", proposal=None, advice=None):
        return advisor_decision_record(
            user_id=job.user_id,
            scan_job_id=job.pk,
            advisor=advisor,
            prompt_input=prompt_input,
            reply=reply,
            decision=decision,
            reason=reason,
            proposal=proposal,
            advice=advice,
            input_hash=input_hash,
        )

    return decided


DUPLICATE_PROPOSAL = "DUPLICATE_PROPOSAL"


def _scan_proposal_store(
    *, job: ScanJob, lock_token: uuid.UUID, advice: Advice, price, decided
) -> TradeProposal | str:
    """The proposal, stored; or, when the user already has the same market and side
    pending, nothing stored and the reason (DUPLICATE_PROPOSAL: …) for the decision."""
    with transaction.atomic():
        # The job row stays locked while the proposal is written, so a lease taken over
        # after expiry cannot overlap with this write: either the token matches or nothing.
        held = ScanJob.objects.select_for_update().filter(pk=job.pk, lock_token=lock_token)
        if not list(held.values_list("pk", flat=True)):
            raise ScanLeaseLost(f"Scan job #{job.pk} was taken over; its proposal is dropped.")
        # The user's lock (the policy row): two jobs of one user store one at a time, so
        # the check below sees the other's proposal.
        list(Policy.objects.for_user(job.user).select_for_update().values_list("pk"))
        pending = proposal_pending_same(user=job.user, market=advice.market, side=advice.side)
        if pending is not None:
            return (
                f"{DUPLICATE_PROPOSAL}: proposal #{pending.pk} ({advice.side} {advice.market}) "
                "is still pending; nothing new is stored."
            )
        proposal = proposal_create(
            user=job.user,
            market=advice.market,
            side=advice.side,
            amount_eur=advice.amount_eur,
            confidence=advice.confidence,
            rationale=advice.rationale,
            source=TradeProposal.Source.SCAN,
            scan_job=job,
            # The price the advisor saw: the snapshot's last, read moments ago.
            price_at_proposal=price,
        )
        decided(proposal)
        return proposal


MAX_MARKETS_PER_JOB = 20
MAX_INTERVAL_MINUTES = 7 * 24 * 60


def _scan_job_fields(*, markets=None, interval_minutes=None) -> dict:
    """Checks the user-settable fields of a scan job; raises ScanJobInvalid naming the field."""
    fields = {}
    if markets is not None:
        if not isinstance(markets, list) or not 1 <= len(markets) <= MAX_MARKETS_PER_JOB:
            raise ScanJobInvalid(
                f"markets must be a list of 1 to {MAX_MARKETS_PER_JOB} markets.",
                extra={"field": "markets"},
            )
        cleaned = [m.strip().upper() for m in markets if isinstance(m, str)]
        if len(cleaned) != len(markets) or not all(MARKET_PATTERN.match(m) for m in cleaned):
            raise ScanJobInvalid("Every market must look like BTC-EUR.", extra={"field": "markets"})
        fields["markets"] = list(dict.fromkeys(cleaned))
    if interval_minutes is not None:
        if (
            isinstance(interval_minutes, bool)
            or not isinstance(interval_minutes, int)
            or not (1 <= interval_minutes <= MAX_INTERVAL_MINUTES)
        ):
            raise ScanJobInvalid(
                f"interval_minutes must be a whole number from 1 to {MAX_INTERVAL_MINUTES}.",
                extra={"field": "interval_minutes"},
            )
        fields["interval_minutes"] = interval_minutes
    return fields


def scan_job_create(*, user, markets: list, interval_minutes: int = 15) -> ScanJob:
    fields = _scan_job_fields(markets=markets, interval_minutes=interval_minutes)
    return ScanJob.objects.create(user=user, **fields)


def scan_job_update(
    *, job: ScanJob, markets: list | None = None, interval_minutes=None, enabled=None
) -> ScanJob:
    """Changes what and how often a job scans; the lease fields belong to the scheduler."""
    fields = _scan_job_fields(markets=markets, interval_minutes=interval_minutes)
    if enabled is not None:
        fields["enabled"] = bool(enabled)
    if fields:
        ScanJob.objects.visible().filter(pk=job.pk).update(**fields, updated_at=timezone.now())
        job.refresh_from_db()
    return job


def scan_job_lease_break(*, job_id: int, actor) -> bool:
    """Frees a stuck lease now, for an operator. The old holder's token stops matching, so it
    can neither store a proposal nor release; the job is due again at once."""
    now = timezone.now()
    broken = ScanJob.objects.filter(pk=job_id, lock_token__isnull=False).update(
        **_lease_cleared(), next_run_at=now, updated_at=now
    )
    if broken:
        logger.warning("lease of scan job %s broken by %s", job_id, actor)
    return bool(broken)
