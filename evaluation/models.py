"""What the advisor was shown and answered, and what its proposals earned afterwards.

`advisor_decisions`: one row per scan that reached the advisor, with its exact input (an
`unchanged` one when the input hash matched the last decision and no call was made).
`proposal_outcomes`: one row per (proposal, horizon), written once the horizon has passed,
whatever became of the proposal; the baselines for the same moment and horizon ride along.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.scoping import UserOwnedQuerySet

HORIZONS_HOURS = (1, 4, 24, 72)


class AdvisorDecision(models.Model):
    class Decision(models.TextChoices):
        PROPOSE = "propose"
        NO_TRADE = "no_trade"
        REJECTED = "rejected"
        # The snapshot had not materially changed since the user's last decision: no call.
        UNCHANGED = "unchanged"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="advisor_decisions"
    )
    scan_job = models.ForeignKey(
        "scheduler.ScanJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="advisor_decisions",
    )
    advisor = models.CharField(max_length=20)  # "llm" or "offline"
    model = models.CharField(max_length=100)
    prompt_version = models.CharField(max_length=40)
    input = models.JSONField()  # the market snapshot, limits and track record, as sent
    # SHA-256 of the rounded snapshot, limits, model and prompt version (scheduler.advisors
    # advisor_input_hash): an equal hash on the user's next scan needs no new call.
    input_hash = models.CharField(max_length=64, blank=True)
    raw_reply = models.TextField(blank=True)
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reason = models.TextField(blank=True)  # why a reply was rejected
    proposal = models.OneToOneField(
        "trading.TradeProposal",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="advisor_decision",
    )
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Empty when the model has no price in LLM_PRICES_EUR_PER_MTOK.
    cost_eur = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    # The exit plan and invalidation the advisor gave with a proposal; no order uses them yet.
    stop_loss = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    take_profit = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    exit_horizon_hours = models.PositiveIntegerField(null=True, blank=True)
    invalidation = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "advisor_decisions"
        constraints = [
            models.CheckConstraint(
                condition=Q(decision__in=["propose", "no_trade", "rejected", "unchanged"]),
                name="advisor_decisions_decision_valid",
                violation_error_code="DECISION_INVALID",
            ),
            models.CheckConstraint(
                condition=~Q(decision="rejected") | ~Q(reason=""),
                name="advisor_decisions_rejected_has_reason",
                violation_error_code="DECISION_REASON_MISSING",
            ),
            models.CheckConstraint(
                condition=Q(cost_eur__isnull=True) | Q(cost_eur__gte=0),
                name="advisor_decisions_cost_not_negative",
                violation_error_code="COST_NEGATIVE",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="advisor_decisions_user_created"),
            # The admin's date filter and the retention sweep.
            models.Index(fields=["created_at"], name="advisor_decisions_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.model} {self.decision}"


class ProposalOutcome(models.Model):
    """A proposal's return for one horizon: s × (price − price_at_proposal) / price_at_proposal
    − 2 × taker fee, s = +1 for a buy and −1 for a sell; `price` is the close of the 1-minute
    candle containing created_at + horizon."""

    proposal = models.ForeignKey(
        "trading.TradeProposal", on_delete=models.CASCADE, related_name="outcomes"
    )
    # The proposal's user, so the row is scoped and guarded like the proposal.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="proposal_outcomes"
    )
    horizon_hours = models.PositiveSmallIntegerField()
    candle_at = models.DateTimeField()  # the start of the 1-minute candle read
    # price_at_proposal, or the close of the candle of created_at's minute when the exchange
    # did not answer as the proposal was stored.
    entry_price = models.DecimalField(max_digits=30, decimal_places=12)
    price = models.DecimalField(max_digits=30, decimal_places=12)
    net_return = models.DecimalField(max_digits=24, decimal_places=12)
    hit = models.BooleanField()
    # Baselines at the same moment and horizon: buying BTC-EUR and holding, and the offline
    # advisor in the shadow on the stored snapshot (empty: no snapshot, or it would not trade).
    btc_net_return = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    shadow_market = models.CharField(max_length=20, blank=True)
    shadow_side = models.CharField(max_length=4, blank=True)
    shadow_confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    shadow_net_return = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    scored_at = models.DateTimeField(auto_now_add=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "proposal_outcomes"
        constraints = [
            models.UniqueConstraint(
                fields=["proposal", "horizon_hours"],
                name="proposal_outcomes_one_per_horizon",
                violation_error_code="OUTCOME_EXISTS",
            ),
            models.CheckConstraint(
                condition=Q(horizon_hours__in=HORIZONS_HOURS),
                name="proposal_outcomes_horizon_valid",
                violation_error_code="HORIZON_INVALID",
            ),
            models.CheckConstraint(
                condition=Q(price__gt=0, entry_price__gt=0),
                name="proposal_outcomes_price_positive",
                violation_error_code="PRICE_NOT_POSITIVE",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "horizon_hours"], name="proposal_outcomes_user_h"),
        ]

    def __str__(self) -> str:
        return f"proposal #{self.proposal_id} +{self.horizon_hours}h: {self.net_return}"
