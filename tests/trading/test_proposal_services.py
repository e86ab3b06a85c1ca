from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import PolicyFactory, TradeProposalFactory, UserFactory
from trading.errors import ProposalInvalid, ProposalStateConflict
from trading.models import ProposalEvent, TradeProposal
from trading.services import (
    proposal_approve,
    proposal_create,
    proposal_override_set,
    proposal_reject,
    proposals_expire,
)

pytestmark = pytest.mark.django_db


def test_a_created_proposal_carries_its_policy_snapshot_and_expiry():
    policy = PolicyFactory(proposal_ttl_minutes=20)
    proposal = proposal_create(
        user=policy.user,
        market="btc-eur",
        side="buy",
        amount_eur="25.50",
        confidence=75,
        rationale="Up 3% in 24h.",
        source="api",
    )
    assert proposal.market == "BTC-EUR"
    assert proposal.amount_eur == Decimal("25.50")
    assert proposal.policy_snapshot == policy.snapshot()
    assert proposal.policy_hash == policy.snapshot_and_hash()[1]
    remaining = proposal.expires_at - timezone.now()
    assert timedelta(minutes=19) < remaining <= timedelta(minutes=20)
    assert proposal.events.get().kind == ProposalEvent.Kind.CREATED


@pytest.mark.parametrize(
    "field, value",
    [
        ("market", "BTCEUR"),
        ("market", 42),
        ("side", "hold"),
        ("amount_eur", -5),
        ("amount_eur", 0),
        ("amount_eur", 12.5),
        ("amount_eur", "1.005"),
        ("amount_eur", "NaN"),
        ("amount_eur", "lots"),
        ("confidence", 30),
        ("confidence", "75"),
        ("confidence", True),
        ("rationale", "x" * 4001),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(field, value):
    fields = {"market": "BTC-EUR", "side": "buy", "amount_eur": "10", "confidence": 50}
    fields[field] = value
    with pytest.raises(ProposalInvalid) as caught:
        proposal_create(user=UserFactory(), source="api", **fields)
    assert caught.value.code == "PROPOSAL_INVALID"
    assert caught.value.extra["field"] == field
    assert TradeProposal.objects.count() == 0


def test_approve_records_who_and_when():
    proposal = TradeProposalFactory()
    staff = UserFactory()
    approved = proposal_approve(proposal=proposal, actor=staff)
    assert approved.status == TradeProposal.Status.APPROVED
    assert approved.decided_by == staff
    assert approved.decided_at is not None
    assert approved.events.filter(kind="approved", actor=staff).exists()


def test_a_proposal_is_approved_once():
    proposal = TradeProposalFactory()
    proposal_approve(proposal=proposal, actor=proposal.user)
    with pytest.raises(ProposalStateConflict):
        proposal_approve(proposal=proposal, actor=proposal.user)


def test_an_expired_proposal_cannot_be_approved():
    proposal = TradeProposalFactory(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ProposalStateConflict) as caught:
        proposal_approve(proposal=proposal, actor=proposal.user)
    assert caught.value.code == "PROPOSAL_EXPIRED"


def test_reject_needs_a_reason():
    proposal = TradeProposalFactory()
    with pytest.raises(ProposalInvalid) as caught:
        proposal_reject(proposal=proposal, actor=proposal.user, reason="  ")
    assert caught.value.code == "REASON_REQUIRED"
    proposal.refresh_from_db()
    assert proposal.status == TradeProposal.Status.PENDING


def test_reject_records_the_reason():
    proposal = TradeProposalFactory(approved=True)
    rejected = proposal_reject(proposal=proposal, actor=proposal.user, reason="Too risky")
    assert rejected.status == TradeProposal.Status.REJECTED
    assert rejected.decision_reason == "Too risky"


def test_an_override_needs_a_reason_and_records_who_and_when():
    proposal = TradeProposalFactory(approved=True)
    staff = UserFactory()
    with pytest.raises(ProposalInvalid):
        proposal_override_set(
            proposal=proposal, actor=staff, cooldown=True, anti_flip=False, reason=""
        )
    changed = proposal_override_set(
        proposal=proposal, actor=staff, cooldown=True, anti_flip=False, reason="Planned rebalance"
    )
    assert (changed.override_cooldown, changed.override_anti_flip) == (True, False)
    assert changed.override_by == staff and changed.override_at is not None
    event = changed.events.get(kind="override_set")
    assert event.data == {
        "cooldown": True,
        "anti_flip": False,
        "price_drift": False,
        "reason": "Planned rebalance",
    }


def test_expiry_moves_only_live_proposals_past_their_time():
    past = timezone.now() - timedelta(minutes=1)
    pending_old = TradeProposalFactory(expires_at=past)
    approved_old = TradeProposalFactory(expires_at=past, approved=True)
    rejected_old = TradeProposalFactory(
        expires_at=past, status="REJECTED", decided_at=timezone.now()
    )
    fresh = TradeProposalFactory()
    assert proposals_expire() == 2
    statuses = {
        p.pk: p.status
        for p in TradeProposal.objects.filter(
            pk__in=[pending_old.pk, approved_old.pk, rejected_old.pk, fresh.pk]
        )
    }
    assert statuses == {
        pending_old.pk: "EXPIRED",
        approved_old.pk: "EXPIRED",
        rejected_old.pk: "REJECTED",
        fresh.pk: "PENDING",
    }
    assert proposals_expire() == 0
