"""The decision screen's advisor part (trading/decision.py): what the advisor saw and said
for this proposal (its stored decision: input, model, cost) and its scored record on this
market and at this confidence, from the scorecard."""

from __future__ import annotations

from evaluation.models import AdvisorDecision
from evaluation.selectors import scorecard_get
from trading.decision import AdvisorView, Record, decision_part
from trading.models import TradeProposal

# The horizon the record is read at: a day, the scorecard's default.
RECORD_HORIZON_HOURS = 24


def _record(label: str, row: dict | None) -> Record:
    row = row or {}
    return Record(
        label=label,
        count=row.get("count", 0),
        hits=row.get("hits", 0),
        hit_rate=row.get("hit_rate"),
        mean_net_return=row.get("mean_net_return"),
    )


@decision_part("advisor")
def proposal_advisor(proposal: TradeProposal) -> AdvisorView:
    decision = AdvisorDecision.objects.for_user(proposal.user_id).filter(proposal=proposal).first()
    card = scorecard_get(user=proposal.user, horizon_hours=RECORD_HORIZON_HOURS)
    on_market = next((r for r in card["by_market"] if r["market"] == proposal.market), None)
    at_confidence = next(
        (r for r in card["by_confidence"] if r["confidence"] == proposal.confidence), None
    )
    records = (
        _record(f"on {proposal.market}", on_market),
        _record(f"at confidence {proposal.confidence}", at_confidence),
        _record("all proposals", card["overall"]),
    )
    given = decision.input if decision is not None and isinstance(decision.input, dict) else {}
    return AdvisorView(
        advisor=decision.advisor if decision else proposal.source,
        model=decision.model if decision else "",
        prompt_version=decision.prompt_version if decision else "",
        cost_eur=decision.cost_eur if decision else None,
        prompt_tokens=decision.prompt_tokens if decision else None,
        completion_tokens=decision.completion_tokens if decision else None,
        market_input=(given.get("markets") or {}).get(proposal.market),
        limits=given.get("limits"),
        stop_loss=decision.stop_loss if decision else None,
        take_profit=decision.take_profit if decision else None,
        exit_horizon_hours=decision.exit_horizon_hours if decision else None,
        invalidation=decision.invalidation if decision else "",
        horizon_hours=RECORD_HORIZON_HOURS,
        records=records,
    )
