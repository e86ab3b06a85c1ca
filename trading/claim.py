"""The claim: preflight under the user's lock and, if every rule passes, the execution row.

Whoever claims inserts the execution as CLAIMED: the web process for the console and the
API (which then queue it for the execute worker by id), the execute worker for a foreground
`execute_proposal`. The claim never sends anything and never loads the trade client.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from accounts.audit import audit_record
from accounts.models import AuditEntry
from core.counters import counter_add
from core.logs import log_event
from core.scoping import scope_system
from exchange.errors import never_reached_engine
from trading.models import LedgerCheckpoint, ProposalEvent, TradeExecution, TradeProposal
from trading.preflight import exchange_facts, preflight_context
from trading.selectors import preflight_facts
from trading.validators import preflight_run

logger = logging.getLogger(__name__)

# Fixed forever: the client order id of a proposal must be the same in every process.
CLIENT_ORDER_NAMESPACE = uuid.UUID("4f0a3b8e-2c1d-4e5f-9a6b-7c8d9e0f1a2b")


def client_order_id_for(proposal_id: int) -> uuid.UUID:
    return uuid.uuid5(CLIENT_ORDER_NAMESPACE, f"trade-proposal:{proposal_id}")


@dataclass
class ExecutionOutcome:
    """What one execute call did. `execution` is None when it was refused before sending."""

    execution: TradeExecution | None
    created: bool = False
    refused_codes: list[str] = field(default_factory=list)
    preflight: dict[str, Any] = field(default_factory=dict)
    retry_after_seconds: float | None = None

    @property
    def refused(self) -> bool:
        return self.execution is None


def execution_claim(*, proposal: TradeProposal, actor_id: int | None) -> ExecutionOutcome:
    """Preflight and claim under the user's lock, in one durable transaction.

    A repeat returns the existing execution; a refusal claims nothing and is audited, and
    the proposal stays APPROVED, so it can run again once the reason is gone. The caller
    has read `proposal` in its own scope; the claim reads in the system scope because the
    balance recheck sums every user's claims (all users trade through one account).
    The exchange's part (rules, a sell's price) is read first: no lock waits on the exchange.
    """
    rules, price = exchange_facts(proposal)
    try:
        with scope_system(), transaction.atomic(durable=True):
            facts = preflight_facts(proposal=proposal, lock=True)
            if facts.checkpoint_due is not None:
                _checkpoint_keep(facts.checkpoint_due)
            earlier = None
            if facts.execution_id is not None:
                earlier = TradeExecution.objects.get(pk=facts.execution_id)
                if not execution_may_run_again(earlier):
                    return ExecutionOutcome(execution=earlier)
            context = preflight_context(facts, rules=rules, price=price)
            result = preflight_run(context)
            preflight = {**result.as_dict(), "at": context.now.isoformat(), "actor_id": actor_id}
            if not result.passed:
                preflight_refusal_record(
                    proposal_id=proposal.pk, user_id=proposal.user_id, preflight=preflight
                )
                return ExecutionOutcome(
                    execution=None, refused_codes=result.failed_codes, preflight=preflight
                )
            snapshot, policy_hash = facts.policy.snapshot_and_hash()
            if earlier is not None:
                execution = _claim_again(
                    earlier,
                    preflight=preflight,
                    policy_hash=policy_hash,
                    snapshot=snapshot,
                    amount_eur=facts.proposal.amount_eur,
                    now=context.now,
                )
                if execution is None:  # another caller moved it meanwhile
                    return ExecutionOutcome(execution=TradeExecution.objects.get(pk=earlier.pk))
                return ExecutionOutcome(execution=execution, created=True, preflight=preflight)
            execution = TradeExecution.objects.create(
                user_id=proposal.user_id,
                proposal_id=proposal.pk,
                client_order_id=client_order_id_for(proposal.pk),
                status=TradeExecution.Status.CLAIMED,
                market=proposal.market,
                side=proposal.side,
                amount_eur=facts.proposal.amount_eur,
                preflight_result=preflight,
                policy_hash=policy_hash,
                policy_snapshot=snapshot,
                claimed_at=context.now,
            )
            audit_record(
                actor_id=actor_id,
                action=AuditEntry.Action.EXECUTION_REQUEST,
                subject=f"proposal #{proposal.pk}",
                before={"status": facts.proposal.status},
                after={"execution_id": execution.pk, "execution_status": execution.status},
            )
    except IntegrityError:
        # The unique constraint is the last guard: another claim for this proposal won.
        with scope_system():
            execution = TradeExecution.objects.get(proposal_id=proposal.pk)
        return ExecutionOutcome(execution=execution)
    return ExecutionOutcome(execution=execution, created=True, preflight=preflight)


def _checkpoint_keep(checkpoint: LedgerCheckpoint) -> None:
    """Keeps the user's new ledger checkpoint: one INSERT or UPDATE, under the user's lock,
    whatever the preflight says (it is what the ledger holds, not a decision)."""
    checkpoint.save(force_insert=checkpoint._state.adding)


def execution_may_run_again(execution: TradeExecution) -> bool:
    """FAILED with an answer proving nothing reached the exchange's engine (304, a bad
    signature or key): the same execution row is claimed again, with the same client order
    id, so a proposal still has one execution and at most one order."""
    return execution.status == TradeExecution.Status.FAILED and never_reached_engine(
        execution.error_code
    )


def _claim_again(earlier, *, preflight, policy_hash, snapshot, amount_eur, now):
    """FAILED -> CLAIMED by compare-and-set; the earlier attempt stays in the preflight
    record. None if the row moved on meanwhile."""
    attempt = {
        "error_code": earlier.error_code,
        "error_message": earlier.error_message,
        "claimed_at": earlier.claimed_at.isoformat(),
        "finished_at": earlier.finished_at.isoformat() if earlier.finished_at else None,
    }
    preflight = {
        **preflight,
        "earlier_attempts": [*earlier.preflight_result.get("earlier_attempts", []), attempt],
    }
    fields = {
        "status": TradeExecution.Status.CLAIMED,
        "claimed_at": now,
        "submitting_at": None,
        "finished_at": None,
        "error_code": "",
        "error_message": "",
        "bitvavo_request": None,
        "bitvavo_response": None,
        "reconcile_attempts": 0,
        "last_reconciled_at": None,
        "preflight_result": preflight,
        "policy_hash": policy_hash,
        "policy_snapshot": snapshot,
        "amount_eur": amount_eur,
        "updated_at": now,
    }
    again = TradeExecution.objects.filter(
        pk=earlier.pk, status=earlier.status, error_code=earlier.error_code
    )
    if not again.update(**fields):
        return None
    for name, value in fields.items():
        setattr(earlier, name, value)
    return earlier


def claim_withdraw(*, execution: TradeExecution) -> bool:
    """Takes back a claim nothing was sent for (still CLAIMED); False if it moved on."""
    claims = TradeExecution.objects.visible().filter(pk=execution.pk)
    deleted, _ = claims.filter(status=TradeExecution.Status.CLAIMED).delete()
    return deleted > 0


def _rejections_count(codes: list[str]) -> None:
    # Counted once the refusal is committed: a rolled-back one did not happen.
    for code in codes:
        counter_add("preflight_rejections", labels=(code,))


def preflight_refusal_record(*, proposal_id: int, user_id: int, preflight: dict) -> None:
    """The refusal in the proposal's audit trail, in the caller's transaction, and the log."""
    ProposalEvent.objects.create(
        proposal_id=proposal_id,
        user_id=user_id,
        actor_id=preflight.get("actor_id"),
        kind=ProposalEvent.Kind.PREFLIGHT_FAILED,
        data=preflight,
    )
    transaction.on_commit(lambda: _rejections_count(list(preflight["failed_codes"])))
    log_event(
        logger,
        "preflight.refused",
        level=logging.WARNING,
        proposal_id=proposal_id,
        user_id=user_id,
        codes=preflight["failed_codes"],
    )
