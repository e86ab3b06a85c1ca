"""Writes on proposals. Each service owns its transaction and writes its audit row in it."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import AuditEntry
from core.text import unstorable_text_field
from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from notifications.services import Event, notification_enqueue, task_publish
from trading.claim import ExecutionOutcome, claim_withdraw, execution_claim
from trading.errors import (
    BrokerUnavailable,
    PolicyInvalid,
    PreflightRefused,
    ProposalInvalid,
    ProposalStateConflict,
)
from trading.models import (
    CONFIDENCE_LEVELS,
    AllocationChange,
    EmergencyStop,
    Policy,
    ProposalEvent,
    Side,
    TradeExecution,
    TradeProposal,
)
from trading.selectors import policy_get_for_user

logger = logging.getLogger(__name__)

MARKET_PATTERN = re.compile(r"^[A-Z0-9]{1,10}-[A-Z0-9]{1,10}$")
AMOUNT_PATTERN = re.compile(r"[0-9]{1,10}(\.[0-9]{1,10})?", re.ASCII)
MAX_RATIONALE_LENGTH = 4000
MAX_AMOUNT_EUR = Decimal("1000000")


def proposal_validate_fields(
    *, market: object, side: object, amount_eur: object, confidence: object, rationale: object
) -> tuple[str, str, Decimal, int, str]:
    """Checks untrusted proposal fields (from an LLM or an API client) and normalises them.

    Raises ProposalInvalid with `extra["field"]` naming the first bad field.
    """

    def invalid(field: str, message: str) -> ProposalInvalid:
        return ProposalInvalid(message, extra={"field": field})

    if not isinstance(market, str) or not MARKET_PATTERN.match(market.strip().upper()):
        raise invalid("market", "The market must look like BTC-EUR.")
    if side not in Side.values:
        raise invalid("side", "The side must be buy or sell.")
    if isinstance(amount_eur, bool | float) or amount_eur is None:
        raise invalid("amount_eur", "The amount must be a decimal number or string, not a float.")
    if not isinstance(amount_eur, int | Decimal) and not (
        isinstance(amount_eur, str) and AMOUNT_PATTERN.fullmatch(amount_eur)
    ):
        # Decimal() alone also takes "10_000", "1e3", "NaN" and non-ASCII digits.
        raise invalid("amount_eur", "The amount must be written like 25 or 25.50.")
    try:
        amount = Decimal(str(amount_eur))
    except (InvalidOperation, ValueError):
        raise invalid("amount_eur", "The amount is not a number.") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT_EUR:
        raise invalid("amount_eur", f"The amount must be above 0 and at most {MAX_AMOUNT_EUR} EUR.")
    if amount != amount.quantize(Decimal("0.01")):
        raise invalid("amount_eur", "The amount may have at most 2 decimals.")
    # A whole number only: 75.0 == 75 in Python, but it is not what the contract says.
    if type(confidence) is not int or confidence not in CONFIDENCE_LEVELS:
        raise invalid("confidence", "Confidence must be one of 0, 25, 50, 75, 100.")
    if not isinstance(rationale, str) or len(rationale) > MAX_RATIONALE_LENGTH:
        raise invalid(
            "rationale", f"The rationale must be text of at most {MAX_RATIONALE_LENGTH} characters."
        )
    if unstorable_text_field(rationale) is not None:
        # The rule the API's parsers apply to every body, here for the LLM's output.
        raise invalid("rationale", "The rationale holds a NUL character or a lone surrogate.")
    return market.strip().upper(), side, amount, int(confidence), rationale


def market_last_price(market: str) -> Decimal | None:
    """The market's last price through the read-only client (public data, no key needed),
    read before any transaction opens. None when the exchange does not answer: the proposal
    is still stored, and scoring takes its price from the candle of that minute."""
    try:
        return ReadonlyClient().ticker_price(market)
    except ExchangeError as error:
        logger.warning("no last price for %s when storing a proposal: %s", market, error.code)
        return None


def proposal_create(
    *,
    user,
    market: object,
    side: object,
    amount_eur: object,
    confidence: object,
    rationale: object = "",
    source: str,
    scan_job=None,
    actor=None,
    price_at_proposal: Decimal | None = None,
) -> TradeProposal:
    """Stores a PENDING proposal with the policy it was made under (snapshot and hash) and
    the market's last price: the scan's own reading, or one read now (API, admin)."""
    market, side, amount, confidence, rationale = proposal_validate_fields(
        market=market, side=side, amount_eur=amount_eur, confidence=confidence, rationale=rationale
    )
    if price_at_proposal is None:
        price_at_proposal = market_last_price(market)
    with transaction.atomic():
        policy = policy_get_for_user(user=user)
        snapshot, policy_hash = policy.snapshot_and_hash()
        proposal = TradeProposal(
            user=user,
            market=market,
            side=side,
            amount_eur=amount,
            confidence=confidence,
            rationale=rationale,
            source=source,
            scan_job=scan_job,
            expires_at=timezone.now() + timedelta(minutes=policy.proposal_ttl_minutes),
            policy_snapshot=snapshot,
            policy_hash=policy_hash,
            price_at_proposal=price_at_proposal,
        )
        proposal.full_clean()
        proposal.save()
        ProposalEvent.objects.create(
            proposal=proposal,
            user=user,
            actor=actor,
            kind=ProposalEvent.Kind.CREATED,
            data={"source": source, "scan_job_id": getattr(scan_job, "pk", None)},
        )
        notification_enqueue(event=Event.PROPOSAL_PENDING, user_id=user.pk, proposal_id=proposal.pk)
    return proposal


def _proposal_transition(
    *, proposal_id: int, user, from_statuses: tuple[str, ...], fields: dict
) -> TradeProposal:
    """Compare-and-set on the proposal's status; a stale view gets PROPOSAL_STATE_CONFLICT."""
    proposals = TradeProposal.objects.visible()
    changed = proposals.filter(pk=proposal_id, status__in=from_statuses).update(
        **fields, updated_at=timezone.now()
    )
    proposal = proposals.get(pk=proposal_id)
    if not changed:
        raise ProposalStateConflict(
            f"Proposal #{proposal_id} is {proposal.status}, not {' or '.join(from_statuses)}.",
            extra={"proposal_id": proposal_id, "status": proposal.status},
        )
    return proposal


@transaction.atomic
def proposal_approve(*, proposal: TradeProposal, actor) -> TradeProposal:
    now = timezone.now()
    if proposal.expires_at <= now:
        raise ProposalStateConflict(
            f"Proposal #{proposal.pk} has expired.",
            code="PROPOSAL_EXPIRED",
            extra={"proposal_id": proposal.pk},
        )
    proposal = _proposal_transition(
        proposal_id=proposal.pk,
        user=actor,
        from_statuses=(TradeProposal.Status.PENDING,),
        fields={"status": TradeProposal.Status.APPROVED, "decided_by": actor, "decided_at": now},
    )
    ProposalEvent.objects.create(
        proposal=proposal, user_id=proposal.user_id, actor=actor, kind=ProposalEvent.Kind.APPROVED
    )
    audit_record(
        actor=actor,
        action=AuditEntry.Action.PROPOSAL_APPROVE,
        subject=f"proposal #{proposal.pk}",
        before={"status": TradeProposal.Status.PENDING},
        after={"status": proposal.status},
    )
    return proposal


@transaction.atomic
def proposal_reject(*, proposal: TradeProposal, actor, reason: str) -> TradeProposal:
    reason = (reason or "").strip()
    if not reason:
        raise ProposalInvalid("A rejection needs a reason.", code="REASON_REQUIRED")
    before = {"status": proposal.status}
    proposal = _proposal_transition(
        proposal_id=proposal.pk,
        user=actor,
        from_statuses=(TradeProposal.Status.PENDING, TradeProposal.Status.APPROVED),
        fields={
            "status": TradeProposal.Status.REJECTED,
            "decided_by": actor,
            "decided_at": timezone.now(),
            "decision_reason": reason,
        },
    )
    ProposalEvent.objects.create(
        proposal=proposal,
        user_id=proposal.user_id,
        actor=actor,
        kind=ProposalEvent.Kind.REJECTED,
        data={"reason": reason},
    )
    audit_record(
        actor=actor,
        action=AuditEntry.Action.PROPOSAL_REJECT,
        subject=f"proposal #{proposal.pk}",
        before=before,
        after={"status": proposal.status, "reason": reason},
    )
    return proposal


@transaction.atomic
def proposal_override_set(
    *,
    proposal: TradeProposal,
    actor,
    cooldown: bool,
    anti_flip: bool,
    reason: str,
    price_drift: bool = False,
) -> TradeProposal:
    """Lifts the cooldown, anti-flip and/or price-drift rule for this one proposal, with
    who, when and why."""
    reason = (reason or "").strip()
    if not reason:
        raise ProposalInvalid("An override needs a reason.", code="REASON_REQUIRED")
    if not (cooldown or anti_flip or price_drift):
        raise ProposalInvalid("Choose the rule to override.", code="OVERRIDE_EMPTY")
    before = {
        "cooldown": proposal.override_cooldown,
        "anti_flip": proposal.override_anti_flip,
        "price_drift": proposal.override_price_drift,
    }
    proposal = _proposal_transition(
        proposal_id=proposal.pk,
        user=actor,
        from_statuses=(TradeProposal.Status.PENDING, TradeProposal.Status.APPROVED),
        fields={
            "override_cooldown": cooldown,
            "override_anti_flip": anti_flip,
            "override_price_drift": price_drift,
            "override_reason": reason,
            "override_by": actor,
            "override_at": timezone.now(),
        },
    )
    ProposalEvent.objects.create(
        proposal=proposal,
        user_id=proposal.user_id,
        actor=actor,
        kind=ProposalEvent.Kind.OVERRIDE_SET,
        data={
            "cooldown": cooldown,
            "anti_flip": anti_flip,
            "price_drift": price_drift,
            "reason": reason,
        },
    )
    audit_record(
        actor=actor,
        action=AuditEntry.Action.OVERRIDE_SET,
        subject=f"proposal #{proposal.pk}",
        before=before,
        after={
            "cooldown": cooldown,
            "anti_flip": anti_flip,
            "price_drift": price_drift,
            "reason": reason,
        },
    )
    return proposal


def proposals_expire() -> int:
    """PENDING and APPROVED proposals past their expiry become EXPIRED, in one statement.

    An APPROVED one that is claimed meanwhile is safe either way: the send step re-checks
    the status and expiry in the same statement that moves it to SUBMITTING.
    """
    now = timezone.now()
    live = (TradeProposal.Status.PENDING, TradeProposal.Status.APPROVED)
    with transaction.atomic():
        expired = list(
            TradeProposal.objects.filter(status__in=live, expires_at__lte=now)
            # One being executed ends as EXECUTED or FAILED, never EXPIRED.
            .exclude(Exists(TradeExecution.objects.filter(proposal_id=OuterRef("pk"))))
            .select_for_update(skip_locked=True)
            .values_list("pk", "user_id")
        )
        if not expired:
            return 0
        TradeProposal.objects.filter(pk__in=[pk for pk, _ in expired], status__in=live).update(
            status=TradeProposal.Status.EXPIRED, updated_at=now
        )
        ProposalEvent.objects.bulk_create(
            ProposalEvent(proposal_id=pk, user_id=user_id, kind=ProposalEvent.Kind.EXPIRED)
            for pk, user_id in expired
        )
    return len(expired)


@transaction.atomic
def emergency_stop_set(*, active: bool, actor, reason: str = "") -> EmergencyStop:
    stop = EmergencyStop.objects.select_for_update().get(pk=EmergencyStop.SINGLETON_ID)
    flipped = stop.active != active
    before = {"active": stop.active, "reason": stop.reason}
    stop.active, stop.reason, stop.changed_by, stop.changed_at = (
        active,
        reason,
        actor,
        timezone.now(),
    )
    stop.save()
    audit_record(
        actor=actor,
        action=AuditEntry.Action.EMERGENCY_STOP,
        subject="emergency stop",
        before=before,
        after={"active": active, "reason": reason},
    )
    if flipped:
        # Every user with notifications hears of it (user_id None).
        notification_enqueue(
            event=Event.EMERGENCY_STOP,
            user_id=None,
            active=active,
            reason=reason,
            actor_id=getattr(actor, "pk", None),
            at=stop.changed_at.isoformat(),
        )
    return stop


def kill_switch_notify(*, policy: Policy, actor=None) -> None:
    """Tells the user their trading was turned on or off (after commit)."""
    notification_enqueue(
        event=Event.KILL_SWITCH,
        user_id=policy.user_id,
        trading_enabled=policy.trading_enabled,
        actor_id=getattr(actor, "pk", None),
        at=timezone.now().isoformat(),
    )


def _policy_lock(*, user) -> Policy:
    """The user's policy row, created with the defaults if needed, locked: it is also the
    per-user execution lock, so a change waits for a running claim."""
    policies = Policy.objects.for_user(user)
    policies.get_or_create(user=user)
    return policies.select_for_update().get()


def policy_update(*, user, changes: dict, actor=None) -> Policy:
    """Changes a user's policy (the API for the user, the admin for staff, `actor`); an
    incoherent result is refused with the rule's stable code."""
    with transaction.atomic():
        policy = _policy_lock(user=user)
        was_enabled, allocation_before = policy.trading_enabled, policy.allocation_eur
        before = {name: getattr(policy, name) for name in changes}
        for name, value in changes.items():
            setattr(policy, name, value)
        try:
            policy.full_clean(exclude=["user"])
        except ValidationError as error:
            codes = [e.code for errors in error.error_dict.values() for e in errors]
            raise PolicyInvalid(
                "; ".join(error.messages),
                code=next((c for c in codes if c and c.startswith("POLICY_")), "POLICY_INVALID"),
                extra={"fields": error.message_dict},
            ) from None
        policy.save()
        if policy.allocation_eur != allocation_before:
            # Funding or withdrawing a user's share of the account: audited with who and what.
            AllocationChange.objects.create(
                user=user,
                actor=actor or user,
                before_eur=allocation_before,
                after_eur=policy.allocation_eur,
            )
        if changes:  # a form saved unchanged changes no rule
            audit_record(
                actor=actor or user,
                action=AuditEntry.Action.POLICY_CHANGE,
                subject=f"policy of {user.get_username()}",
                before=before,
                after={name: getattr(policy, name) for name in changes},
            )
        if policy.trading_enabled != was_enabled:
            kill_switch_notify(policy=policy, actor=actor or user)
    return policy


@transaction.atomic
def policy_trading_set(*, user, enabled: bool, actor=None) -> Policy:
    policy = _policy_lock(user=user)
    flipped = policy.trading_enabled != enabled
    policy.trading_enabled = enabled
    policy.save(update_fields=["trading_enabled", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditEntry.Action.KILL_SWITCH,
        subject=f"policy of {user.get_username()}",
        before={"trading_enabled": not enabled if flipped else enabled},
        after={"trading_enabled": enabled},
    )
    if flipped:
        kill_switch_notify(policy=policy, actor=actor)
    return policy


# The execute worker's task, dispatched by name: web code never imports trading.tasks.
EXECUTE_CLAIM_TASK = "trading.tasks.execute_claim"


def execution_request(*, proposal: TradeProposal, actor) -> ExecutionOutcome:
    """Claims the execution here (preflight under the user's lock) and queues the sending
    for the execute worker, the only process with the trade key. A repeat returns the same
    execution and queues it again while it is CLAIMED (the task is idempotent, and a lost
    dispatch is sent again). A refusal raises PreflightRefused with the failing codes."""
    outcome = execution_claim(proposal=proposal, actor_id=getattr(actor, "pk", None))
    if outcome.refused:
        raise PreflightRefused(
            "Preflight refused the order.",
            extra={"failed_codes": outcome.refused_codes, "preflight": outcome.preflight},
        )
    execution = outcome.execution
    if execution.status == TradeExecution.Status.CLAIMED:
        transaction.on_commit(lambda: _execution_dispatch(execution))
    return outcome


def _execution_dispatch(execution: TradeExecution) -> None:
    try:
        task_publish(EXECUTE_CLAIM_TASK, [execution.pk], queue="execute")
    except Exception as error:
        # Not queued: the claim is taken back, so none waits for a task that never comes (a
        # task that did go out then finds nothing to send). A repeat after recovery claims
        # again. No claim to take back: a worker already has it, nothing is stranded.
        if claim_withdraw(execution=execution):
            raise BrokerUnavailable(
                "The execute queue is unreachable; nothing was claimed. Try again shortly.",
                extra={"proposal_id": execution.proposal_id},
            ) from error
