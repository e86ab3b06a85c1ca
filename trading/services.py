"""Writes on proposals. Each service owns its transaction and writes its audit row in it."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from trading.errors import ProposalInvalid
from trading.models import CONFIDENCE_LEVELS, ProposalEvent, Side, TradeProposal
from trading.selectors import policy_get_for_user

MARKET_PATTERN = re.compile(r"^[A-Z0-9]{1,10}-[A-Z0-9]{1,10}$")
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
    try:
        amount = Decimal(str(amount_eur))
    except (InvalidOperation, ValueError):
        raise invalid("amount_eur", "The amount is not a number.") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT_EUR:
        raise invalid("amount_eur", f"The amount must be above 0 and at most {MAX_AMOUNT_EUR} EUR.")
    if amount != amount.quantize(Decimal("0.01")):
        raise invalid("amount_eur", "The amount may have at most 2 decimals.")
    if isinstance(confidence, bool) or confidence not in CONFIDENCE_LEVELS:
        raise invalid("confidence", "Confidence must be one of 0, 25, 50, 75, 100.")
    if not isinstance(rationale, str) or len(rationale) > MAX_RATIONALE_LENGTH:
        raise invalid(
            "rationale", f"The rationale must be text of at most {MAX_RATIONALE_LENGTH} characters."
        )
    return market.strip().upper(), side, amount, int(confidence), rationale


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
) -> TradeProposal:
    """Stores a PENDING proposal with the policy it was made under (snapshot and hash)."""
    market, side, amount, confidence, rationale = proposal_validate_fields(
        market=market, side=side, amount_eur=amount_eur, confidence=confidence, rationale=rationale
    )
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
    return proposal
