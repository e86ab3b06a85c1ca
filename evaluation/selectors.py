"""Reads of the evaluation app: the scorecard, and the advisor's record for its prompt."""

from __future__ import annotations

import json

from django.conf import settings

from evaluation.models import AdvisorDecision, ProposalOutcome
from evaluation.scorecard import Scored, scorecard_of
from trading.models import TradeProposal

TRACK_RECORD_PROPOSALS = 20


# Decisions an equal snapshot may repeat without a call; after a rejected reply, ask again.
REPEATABLE_DECISIONS = (
    AdvisorDecision.Decision.PROPOSE,
    AdvisorDecision.Decision.NO_TRADE,
    AdvisorDecision.Decision.UNCHANGED,
)


def advisor_decision_unchanged(*, user_id: int, input_hash: str) -> bool:
    """True when the user's latest decision was on this very input hash and stands."""
    if not input_hash:
        return False
    latest = (
        AdvisorDecision.objects.filter(user_id=user_id)
        .order_by("-created_at")
        .values("input_hash", "decision")
        .first()
    )
    return (
        latest is not None
        and latest["input_hash"] == input_hash
        and latest["decision"] in REPEATABLE_DECISIONS
    )


def human_decision(*, status: str, decided_at) -> str:
    """approved (executed, failed or expired after approval included), rejected, undecided."""
    if status == TradeProposal.Status.REJECTED:
        return "rejected"
    return "approved" if decided_at is not None else "undecided"


def _outcomes(*, user, horizon_hours: int):
    """A user's outcomes at one horizon, or everyone's for user=None (staff, commands)."""
    outcomes = (
        ProposalOutcome.objects.visible()
        if user is None
        else (ProposalOutcome.objects.for_user(user))
    )
    return outcomes.filter(horizon_hours=horizon_hours)


def scorecard_get(*, user, horizon_hours: int) -> dict:
    """The scorecard of `user`'s proposals at one horizon; user=None: every visible one."""
    rows = [
        Scored(
            net_return=o["net_return"],
            confidence=o["proposal__confidence"],
            market=o["proposal__market"],
            advisor=o["proposal__advisor_decision__advisor"] or o["proposal__source"],
            model=o["proposal__advisor_decision__model"] or "",
            human=human_decision(
                status=o["proposal__status"], decided_at=o["proposal__decided_at"]
            ),
            btc_net_return=o["btc_net_return"],
            shadow_net_return=o["shadow_net_return"],
            shadow_confidence=o["shadow_confidence"],
        )
        for o in _outcomes(user=user, horizon_hours=horizon_hours).values(
            "net_return",
            "btc_net_return",
            "shadow_net_return",
            "shadow_confidence",
            "proposal__confidence",
            "proposal__market",
            "proposal__source",
            "proposal__status",
            "proposal__decided_at",
            "proposal__advisor_decision__advisor",
            "proposal__advisor_decision__model",
        )
    ]
    return scorecard_of(rows, horizon_hours=horizon_hours)


def advisor_track_record(*, user_id: int, model: str, markets: list[str]) -> list[dict]:
    """The advisor's own last scored proposals on these markets, newest first, with what each
    earned per horizon, cut to ADVISOR_TRACK_RECORD_MAX_TOKENS (about four characters each)."""
    outcomes = (
        ProposalOutcome.objects.for_user(user_id)
        .filter(proposal__market__in=markets, proposal__advisor_decision__model=model)
        .order_by("-proposal__created_at", "horizon_hours")
        .values(
            "proposal_id",
            "horizon_hours",
            "net_return",
            "proposal__created_at",
            "proposal__market",
            "proposal__side",
            "proposal__confidence",
            "proposal__price_at_proposal",
            "proposal__status",
            "proposal__decided_at",
        )[: TRACK_RECORD_PROPOSALS * 4]
    )
    record: dict[int, dict] = {}
    for o in outcomes:
        entry = record.setdefault(
            o["proposal_id"],
            {
                "at": o["proposal__created_at"].strftime("%Y-%m-%dT%H:%MZ"),
                "market": o["proposal__market"],
                "side": o["proposal__side"],
                "confidence": o["proposal__confidence"],
                "price": str(o["proposal__price_at_proposal"] or ""),
                "human": human_decision(
                    status=o["proposal__status"], decided_at=o["proposal__decided_at"]
                ),
                "net_return": {},
            },
        )
        entry["net_return"][str(o["horizon_hours"])] = str(round(o["net_return"], 4))
    return track_record_capped(list(record.values()))


def track_record_capped(entries: list[dict]) -> list[dict]:
    """The newest entries that fit in ADVISOR_TRACK_RECORD_MAX_TOKENS (four characters each)."""
    kept, budget = [], settings.ADVISOR_TRACK_RECORD_MAX_TOKENS * 4
    for entry in entries:
        budget -= len(json.dumps(entry, separators=(",", ":"))) + 1
        if budget < 0:
            break
        kept.append(entry)
    return kept
