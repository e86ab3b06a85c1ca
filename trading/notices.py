"""How trading's events read in a notification: the proposal that awaits approval and the
execution that ended, read from their rows by the notify worker. Registered with the
notifications app when trading is loaded (TradingConfig.ready)."""

from __future__ import annotations

from notifications.services import Event, Notice, console_url, notice_builder
from trading.models import TradeExecution, TradeProposal


@notice_builder(Event.PROPOSAL_PENDING)
def proposal_pending(facts: dict) -> Notice | None:
    proposal = TradeProposal.objects.filter(pk=facts["proposal_id"]).first()
    if proposal is None:
        return None
    return Notice(
        key=f"proposal:{proposal.pk}",
        subject=(
            f"Proposal #{proposal.pk} awaits approval: {proposal.side} "
            f"{proposal.amount_eur} EUR of {proposal.market}"
        ),
        data={
            "proposal": {
                "id": proposal.pk,
                "market": proposal.market,
                "side": proposal.side,
                "amount_eur": str(proposal.amount_eur),
                "confidence": proposal.confidence,
                "rationale": proposal.rationale,
                "source": proposal.source,
                "expires_at": proposal.expires_at.isoformat(),
            },
            "url": console_url("admin:trading_tradeproposal_change", proposal.pk),
        },
        occurred_at=proposal.created_at.isoformat(),
    )


def _text(value) -> str | None:
    return None if value is None else str(value)


@notice_builder(Event.EXECUTION_ENDED)
def execution_ended(facts: dict) -> Notice | None:
    execution = TradeExecution.objects.filter(pk=facts["execution_id"]).first()
    if execution is None or execution.finished_at is None:
        return None
    outcome = execution.status
    if execution.partially_filled:
        outcome += f" (partly filled: {execution.filled_eur} EUR)"
    if execution.error_code:
        outcome += f" ({execution.error_code})"
    return Notice(
        key=f"execution:{execution.pk}",
        subject=(
            f"Execution of proposal #{execution.proposal_id} {outcome}: {execution.side} "
            f"{execution.amount_eur} EUR of {execution.market}"
        ),
        data={
            "execution": {
                "id": execution.pk,
                "proposal_id": execution.proposal_id,
                "status": execution.status,
                "error_code": execution.error_code,
                "error_message": execution.error_message,
                "market": execution.market,
                "side": execution.side,
                "amount_eur": str(execution.amount_eur),
                "client_order_id": str(execution.client_order_id),
                "exchange_order_id": execution.exchange_order_id,
                "reconcile_attempts": execution.reconcile_attempts,
                "finished_at": execution.finished_at.isoformat(),
                "exchange_status": execution.exchange_status,
                "partially_filled": execution.partially_filled,
                "filled_amount": _text(execution.filled_amount),
                "filled_eur": _text(execution.filled_eur),
                "fee_eur": _text(execution.fee_eur),
                "average_price": _text(execution.average_price),
            },
            "url": console_url("admin:trading_tradeproposal_change", execution.proposal_id),
        },
        occurred_at=execution.finished_at.isoformat(),
    )
