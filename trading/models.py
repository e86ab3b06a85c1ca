"""The hardening data model: every guarantee that can be a database rule is one.

Table names are the ones the operators' runbooks use (`\\d trade_executions` works).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from core.scoping import UserOwnedQuerySet
from trading.validators import CONFIDENCE_LEVELS


class Side(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


NOT_NEGATIVE = MinValueValidator(Decimal("0"))
AT_MOST_A_YEAR = MaxValueValidator(365 * 24 * 60)  # minutes
AT_MOST_A_WEEK = MaxValueValidator(7 * 24 * 60)  # minutes


class Policy(models.Model):
    """A user's trading rules. The kill switch is off until the user turns it on."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trading_policy"
    )
    trading_enabled = models.BooleanField(default=False)
    # Markets like "BTC-EUR". Empty means nothing may be traded (deny by default).
    allowlist = models.JSONField(default=list, blank=True)
    # The bounds below hold for every writer: the API's input, the admin form, the service.
    min_order_eur = models.DecimalField(
        max_digits=18, decimal_places=2, default=Decimal("10"), validators=[NOT_NEGATIVE]
    )
    max_order_eur = models.DecimalField(
        max_digits=18, decimal_places=2, default=Decimal("100"), validators=[NOT_NEGATIVE]
    )
    min_confidence = models.PositiveSmallIntegerField(
        default=50, validators=[MaxValueValidator(100)]
    )
    cooldown_minutes = models.PositiveIntegerField(default=60, validators=[AT_MOST_A_YEAR])
    anti_flip_minutes = models.PositiveIntegerField(default=240, validators=[AT_MOST_A_YEAR])
    max_daily_trades = models.PositiveIntegerField(default=5, validators=[MaxValueValidator(10000)])
    max_trades_per_hour = models.PositiveIntegerField(
        default=2, validators=[MaxValueValidator(10000)]
    )
    # The most the user may have invested at once (open positions at cost, open buys and the
    # next buy): their share of the shared account. 0 for a new user: nothing may be bought.
    # Staff set it (funding and withdrawals); the user's API shows it, never changes it.
    allocation_eur = models.DecimalField(
        max_digits=18, decimal_places=2, default=Decimal("0"), validators=[NOT_NEGATIVE]
    )
    gpt_daily_limit = models.PositiveIntegerField(
        default=48, validators=[MaxValueValidator(100000)]
    )
    gpt_hourly_limit = models.PositiveIntegerField(default=6, validators=[MaxValueValidator(10000)])
    scan_interval_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), AT_MOST_A_WEEK]
    )
    proposal_ttl_minutes = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), AT_MOST_A_WEEK]
    )
    # The most the market may have moved against a proposal since it was made, in percent
    # (the price_drift rule): a buy whose price rose, a sell whose price fell.
    max_price_drift_pct = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.0"),
        validators=[NOT_NEGATIVE, MaxValueValidator(Decimal("100"))],
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserOwnedQuerySet.as_manager()

    # The policy's rules, named once: what decides what may trade. The snapshot and its hash
    # cover exactly these; the API, the admin form and the preflight facts read these.
    SNAPSHOT_FIELDS = (
        "trading_enabled",
        "allowlist",
        "min_order_eur",
        "max_order_eur",
        "min_confidence",
        "cooldown_minutes",
        "anti_flip_minutes",
        "max_daily_trades",
        "max_trades_per_hour",
        "allocation_eur",
        "gpt_daily_limit",
        "gpt_hourly_limit",
        "scan_interval_minutes",
        "proposal_ttl_minutes",
        "max_price_drift_pct",
    )

    # Of those, what only staff change (a user may not raise their own share of the account).
    STAFF_FIELDS = ("allocation_eur",)

    class Meta:
        db_table = "trading_policies"
        verbose_name_plural = "policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(min_order_eur__gt=0),
                name="trading_policies_min_order_positive",
                violation_error_code="POLICY_MIN_ORDER_NOT_POSITIVE",
                violation_error_message="The minimum order must be more than 0 EUR.",
            ),
            models.CheckConstraint(
                condition=Q(max_order_eur__gte=F("min_order_eur")),
                name="trading_policies_min_not_above_max",
                violation_error_code="POLICY_MIN_ABOVE_MAX",
                violation_error_message="The minimum order may not exceed the maximum order.",
            ),
            models.CheckConstraint(
                condition=Q(min_confidence__lte=100),
                name="trading_policies_min_confidence_range",
                violation_error_code="POLICY_MIN_CONFIDENCE_RANGE",
                violation_error_message="The minimum confidence must be between 0 and 100.",
            ),
            models.CheckConstraint(
                condition=Q(scan_interval_minutes__gte=1, proposal_ttl_minutes__gte=1),
                name="trading_policies_intervals_positive",
                violation_error_code="POLICY_INTERVAL_NOT_POSITIVE",
                violation_error_message="Scan interval and proposal lifetime must be >= 1 minute.",
            ),
        ]

    def __str__(self) -> str:
        return f"Policy of {self.user}"

    def snapshot(self) -> dict:
        """The policy as canonical JSON-ready data: Decimals as strings, allowlist sorted."""
        data = {}
        for name in self.SNAPSHOT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Decimal):
                value = str(value.quantize(Decimal("0.01")))
            elif name == "allowlist":
                value = sorted(set(value))
            data[name] = value
        return data

    @staticmethod
    def hash_snapshot(snapshot: dict) -> str:
        canonical = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def snapshot_and_hash(self) -> tuple[dict, str]:
        snapshot = self.snapshot()
        return snapshot, self.hash_snapshot(snapshot)


class AllocationChange(models.Model):
    """Append-only audit of a user's allocation: who changed it, from what, to what.
    Funding a user or taking funds back is this change, made by staff."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    before_eur = models.DecimalField(max_digits=18, decimal_places=2)
    after_eur = models.DecimalField(max_digits=18, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "allocation_changes"
        indexes = [models.Index(fields=["user", "-created_at"], name="allocation_changes_user")]

    def __str__(self) -> str:
        return f"Allocation of {self.user}: {self.before_eur} -> {self.after_eur} EUR"


class AccountFunds(models.Model):
    """What was paid into the shared exchange account from outside, per asset: deposits less
    withdrawals, as staff record them. The users' allocations are carved out of its EUR; the
    rest is unallocated. Funds plus every fill of every user must equal the exchange's
    balance of each asset (oracle_report checks it)."""

    asset = models.CharField(max_length=16, unique=True)
    amount = models.DecimalField(max_digits=36, decimal_places=12)
    note = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "account_funds"
        verbose_name_plural = "account funds"

    def __str__(self) -> str:
        return f"{self.asset}: {self.amount}"


class AccountFlow(models.Model):
    """What every user's fills together moved in the shared account, per asset, since the
    first fill: kept by trading/flows.py in the transaction that records the fills, so the
    holdings check reads one row per asset however long the history is."""

    asset = models.CharField(max_length=16, unique=True)
    # Sums of quantities (12 places), EUR amounts (8) and fees (12): exact at 12 places.
    amount = models.DecimalField(max_digits=40, decimal_places=12, default=Decimal("0"))
    # The last addition's own id: the adder that finds a row missing tells by it which rows
    # its update reached (trading/flows.py).
    last_change = models.UUIDField(null=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "account_flows"

    def __str__(self) -> str:
        return f"{self.asset}: {self.amount}"


class EmergencyStop(models.Model):
    """The operator's stop for every execution of every user: a single row (id = 1)."""

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    active = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "trading_emergency_stop"
        constraints = [
            models.CheckConstraint(
                condition=Q(id=1),
                name="trading_emergency_stop_singleton",
                violation_error_code="EMERGENCY_STOP_SINGLETON",
            ),
        ]

    def __str__(self) -> str:
        return "Emergency stop: ACTIVE" if self.active else "Emergency stop: off"


class TradeProposal(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        APPROVED = "APPROVED"
        REJECTED = "REJECTED"
        EXPIRED = "EXPIRED"
        EXECUTED = "EXECUTED"
        FAILED = "FAILED"

    class Source(models.TextChoices):
        SCAN = "scan"
        API = "api"
        ADMIN = "admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trade_proposals"
    )
    market = models.CharField(max_length=20)
    side = models.CharField(max_length=4, choices=Side.choices)
    amount_eur = models.DecimalField(max_digits=18, decimal_places=2)
    confidence = models.PositiveSmallIntegerField()
    rationale = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField()
    source = models.CharField(max_length=5, choices=Source.choices)
    scan_job = models.ForeignKey(
        "scheduler.ScanJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="proposals",
    )
    policy_hash = models.CharField(max_length=64)
    policy_snapshot = models.JSONField()
    # The market's last price read when the proposal was stored: what it is scored from.
    # Empty only if the exchange did not answer then; scoring fills it from the candle.
    price_at_proposal = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    override_cooldown = models.BooleanField(default=False)
    override_anti_flip = models.BooleanField(default=False)
    override_price_drift = models.BooleanField(default=False, db_default=False)
    override_reason = models.TextField(blank=True)
    override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    override_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    # EXECUTED, but its one order filled only part of the amount (nothing is sent for the rest).
    partially_executed = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "trade_proposals"
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__in=CONFIDENCE_LEVELS),
                name="trade_proposals_confidence_level",
                violation_error_code="CONFIDENCE_INVALID",
                violation_error_message="Confidence must be one of 0, 25, 50, 75, 100.",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["PENDING", "APPROVED", "REJECTED", "EXPIRED", "EXECUTED", "FAILED"]
                ),
                name="trade_proposals_status_valid",
                violation_error_code="PROPOSAL_STATUS_INVALID",
            ),
            models.CheckConstraint(
                condition=Q(side__in=["buy", "sell"]),
                name="trade_proposals_side_valid",
                violation_error_code="SIDE_INVALID",
            ),
            models.CheckConstraint(
                condition=Q(source__in=["scan", "api", "admin"]),
                name="trade_proposals_source_valid",
                violation_error_code="SOURCE_INVALID",
            ),
            models.CheckConstraint(
                condition=Q(amount_eur__gt=0),
                name="trade_proposals_amount_positive",
                violation_error_code="AMOUNT_NOT_POSITIVE",
                violation_error_message="The amount must be more than 0 EUR.",
            ),
            # An override without who and why is not an override.
            models.CheckConstraint(
                condition=Q(
                    override_cooldown=False, override_anti_flip=False, override_price_drift=False
                )
                | (
                    Q(override_by__isnull=False, override_at__isnull=False) & ~Q(override_reason="")
                ),
                name="trade_proposals_override_recorded",
                violation_error_code="OVERRIDE_NOT_RECORDED",
                violation_error_message="An override needs a reason, who set it and when.",
            ),
            # Every proposal that got past PENDING by a decision says when it was decided.
            models.CheckConstraint(
                condition=~Q(status__in=["APPROVED", "REJECTED", "EXECUTED", "FAILED"])
                | Q(decided_at__isnull=False),
                name="trade_proposals_decision_recorded",
                violation_error_code="DECISION_NOT_RECORDED",
            ),
            models.CheckConstraint(
                condition=Q(partially_executed=False) | Q(status="EXECUTED"),
                name="trade_proposals_partial_is_executed",
                violation_error_code="PARTIAL_NOT_EXECUTED",
                violation_error_message="Only an executed proposal can be partly executed.",
            ),
        ]
        indexes = [
            # The approval queue: a user's pending proposals, newest first.
            models.Index(
                fields=["user", "-created_at"],
                condition=Q(status="PENDING"),
                name="trade_proposals_pending_user",
            ),
            # The expiry sweep: live proposals past their expiry.
            models.Index(
                fields=["expires_at"],
                condition=Q(status__in=["PENDING", "APPROVED"]),
                name="trade_proposals_live_expiry",
            ),
            models.Index(
                fields=["user", "status", "-created_at"], name="trade_proposals_user_status"
            ),
            # A user's proposals newest first (the API list), and everyone's (the admin list).
            models.Index(fields=["user", "-created_at"], name="trade_proposals_user_created"),
            models.Index(fields=["-created_at"], name="trade_proposals_created"),
        ]
        permissions = [
            ("approve_proposal", "Can approve or reject trade proposals"),
            ("execute_proposal", "Can execute approved trade proposals"),
            ("override_guards", "Can override cooldown and anti-flip on a proposal"),
            ("emergency_stop", "Can flip the operator emergency stop"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {self.amount_eur} EUR {self.market} ({self.status})"


class ProposalEvent(models.Model):
    """Append-only audit trail of a proposal: decisions, overrides, preflight attempts."""

    class Kind(models.TextChoices):
        CREATED = "created"
        APPROVED = "approved"
        REJECTED = "rejected"
        OVERRIDE_SET = "override_set"
        PREFLIGHT_FAILED = "preflight_failed"
        EXPIRED = "expired"

    proposal = models.ForeignKey(TradeProposal, on_delete=models.CASCADE, related_name="events")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "trade_proposal_events"
        indexes = [
            models.Index(fields=["proposal", "created_at"], name="trade_prop_events_proposal")
        ]

    def __str__(self) -> str:
        return f"{self.kind} on proposal #{self.proposal_id}"


class TradeExecution(models.Model):
    """The one attempt to turn an approved proposal into one exchange order.

    CLAIMED -> SUBMITTING -> SUBMITTED | FAILED. The unique constraint on (user, proposal)
    is the last guard of "at most one order per proposal".

    Once its order is final at the exchange, the execution records the exchange's status and
    what was filled. SUBMITTED means something was filled; `partially_filled` says the order
    ended (e.g. canceledMarketProtection) with less than asked. A final order with nothing
    filled is FAILED with ORDER_NOT_FILLED.
    """

    class Status(models.TextChoices):
        CLAIMED = "CLAIMED"
        SUBMITTING = "SUBMITTING"
        SUBMITTED = "SUBMITTED"
        FAILED = "FAILED"

    # Executions that may have produced an order: they count for caps, cooldown and balance.
    LIVE_STATUSES = (Status.CLAIMED, Status.SUBMITTING, Status.SUBMITTED)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trade_executions"
    )
    proposal = models.ForeignKey(TradeProposal, on_delete=models.PROTECT, related_name="executions")
    client_order_id = models.UUIDField(unique=True, default=uuid.uuid4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CLAIMED)
    # Copied from the proposal so caps, cooldown and anti-flip read one table.
    market = models.CharField(max_length=20)
    side = models.CharField(max_length=4, choices=Side.choices)
    amount_eur = models.DecimalField(max_digits=18, decimal_places=2)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    bitvavo_request = models.JSONField(null=True, blank=True)
    bitvavo_response = models.JSONField(null=True, blank=True)
    preflight_result = models.JSONField(default=dict, blank=True)
    policy_hash = models.CharField(max_length=64)
    policy_snapshot = models.JSONField()
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    claimed_at = models.DateTimeField()
    submitting_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Lookups by the reconciler that found no order; FAILED only after several.
    reconcile_attempts = models.PositiveSmallIntegerField(default=0)
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    # The final order as the exchange reported it; empty/NULL until the order is final.
    exchange_status = models.CharField(max_length=32, blank=True, default="", db_default="")
    filled_amount = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    filled_eur = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    # NULL once final only when a fill's fee is in a currency that is not converted to EUR.
    fee_eur = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    average_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    partially_filled = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "trade_executions"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "proposal"],
                name="trade_executions_one_per_proposal",
                violation_error_code="EXECUTION_EXISTS",
                violation_error_message="This proposal already has an execution.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["CLAIMED", "SUBMITTING", "SUBMITTED", "FAILED"]),
                name="trade_executions_status_valid",
                violation_error_code="EXECUTION_STATUS_INVALID",
            ),
            models.CheckConstraint(
                condition=~Q(status="SUBMITTED") | ~Q(exchange_order_id=""),
                name="trade_executions_submitted_has_order_id",
                violation_error_code="SUBMITTED_WITHOUT_ORDER_ID",
                violation_error_message="A submitted execution must carry the exchange order id.",
            ),
            # FAILED without submitting_at means nothing was ever sent.
            models.CheckConstraint(
                condition=~Q(status__in=["SUBMITTING", "SUBMITTED"])
                | Q(submitting_at__isnull=False),
                name="trade_executions_submitting_time_recorded",
                violation_error_code="SUBMITTING_TIME_MISSING",
            ),
            models.CheckConstraint(
                condition=~Q(status="FAILED") | ~Q(error_code=""),
                name="trade_executions_failed_has_code",
                violation_error_code="FAILED_WITHOUT_CODE",
            ),
            # What was filled is recorded whole, with the exchange's final status, or not at all.
            models.CheckConstraint(
                condition=Q(exchange_status="", filled_amount__isnull=True, filled_eur__isnull=True)
                | (
                    ~Q(exchange_status="")
                    & Q(filled_amount__isnull=False, filled_eur__isnull=False)
                    & Q(filled_amount__gte=0, filled_eur__gte=0)
                    & (Q(fee_eur__isnull=True) | Q(fee_eur__gte=0))
                ),
                name="trade_executions_fills_recorded_whole",
                violation_error_code="FILLS_NOT_RECORDED_WHOLE",
            ),
            # A success filled something: a final order with nothing filled is FAILED.
            models.CheckConstraint(
                condition=~Q(status="SUBMITTED") | Q(exchange_status="") | Q(filled_amount__gt=0),
                name="trade_executions_submitted_filled",
                violation_error_code="SUBMITTED_NOTHING_FILLED",
                violation_error_message="A submitted execution with a final order filled some.",
            ),
            models.CheckConstraint(
                condition=Q(partially_filled=False)
                | Q(status="SUBMITTED", filled_eur__gt=0, filled_eur__lt=F("amount_eur")),
                name="trade_executions_partial_below_asked",
                violation_error_code="PARTIAL_NOT_BELOW_ASKED",
                violation_error_message="A partial execution filled more than 0 and less than "
                "the amount asked.",
            ),
        ]
        indexes = [
            # The reconciler: SUBMITTING rows older than T.
            models.Index(
                fields=["submitting_at"],
                condition=Q(status="SUBMITTING"),
                name="trade_executions_submitting",
            ),
            # Caps, cooldown and anti-flip: a user's recent executions.
            models.Index(fields=["user", "-claimed_at"], name="trade_executions_user_claimed"),
            # The balance recheck: everything claimed since the last balance snapshot.
            models.Index(fields=["claimed_at"], name="trade_executions_claimed"),
            # /metrics: the executions in flight, a handful whatever the history.
            models.Index(
                fields=["status"],
                condition=Q(status__in=["CLAIMED", "SUBMITTING"]),
                name="trade_executions_live",
            ),
        ]

    def __str__(self) -> str:
        return f"Execution #{self.pk} of proposal #{self.proposal_id} ({self.status})"


class TradeHistory(models.Model):
    """One fill of an execution's order, as the exchange reported it: `amount` in the base
    asset, `amount_eur` = price × amount, `fee` in `fee_currency`, `fee_eur` in EUR (NULL
    when the currency is not converted). Rows written before fills were kept one by one
    hold the whole order and an empty fill id."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trade_history"
    )
    execution = models.ForeignKey(TradeExecution, on_delete=models.PROTECT, related_name="history")
    fill_id = models.CharField(max_length=64, blank=True, default="", db_default="")
    market = models.CharField(max_length=20)
    asset = models.CharField(max_length=10)
    side = models.CharField(max_length=4, choices=Side.choices)
    amount = models.DecimalField(max_digits=30, decimal_places=12)
    amount_eur = models.DecimalField(max_digits=24, decimal_places=8)
    price = models.DecimalField(max_digits=30, decimal_places=12)
    fee = models.DecimalField(max_digits=30, decimal_places=12, default=Decimal("0"))
    fee_currency = models.CharField(max_length=16, blank=True, default="", db_default="")
    fee_eur = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    executed_at = models.DateTimeField()

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "trade_history"
        verbose_name_plural = "trade history"
        indexes = [
            models.Index(fields=["user", "asset", "-executed_at"], name="trade_history_user_asset"),
            # The holdings check: the fills newer than the last balance read.
            models.Index(fields=["executed_at"], name="trade_history_executed"),
            # A user's fills in ledger order, and those after a checkpoint.
            models.Index(fields=["user", "executed_at", "id"], name="trade_history_user_ledger"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gte=0, amount_eur__gte=0, price__gte=0, fee__gte=0),
                name="trade_history_amounts_not_negative",
                violation_error_code="HISTORY_NEGATIVE_AMOUNT",
            ),
            models.CheckConstraint(
                condition=Q(fee_eur__isnull=True) | Q(fee_eur__gte=0),
                name="trade_history_fee_eur_not_negative",
                violation_error_code="HISTORY_NEGATIVE_AMOUNT",
            ),
            models.UniqueConstraint(
                fields=["execution", "fill_id"],
                name="trade_history_one_row_per_fill",
                violation_error_code="FILL_RECORDED",
                violation_error_message="This fill is already in the execution's history.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.asset} @ {self.price}"


class LedgerCheckpoint(models.Model):
    """A user's positions (trading/ledger.py) after their fills up to one fill in ledger
    order (executed_at, then the history row's id), so the claim's holding rule replays only
    the fills after it, however long the history. Taken by a claim under the user's lock
    (trading/selectors.py says when); nothing else writes it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="ledger_checkpoint",
    )
    # The last fill it includes, and how many it includes.
    through_executed_at = models.DateTimeField()
    through_history_id = models.BigIntegerField()
    fills = models.PositiveIntegerField()
    # The user's highest history row id when it was taken: a row above it placed before the
    # checkpoint in ledger order would mean the checkpoint missed it (the claim then replays
    # every fill and takes it again).
    last_history_id = models.BigIntegerField()
    # Per asset, trading.ledger.position_state: exact decimals as strings.
    positions = models.JSONField(default=dict)
    taken_at = models.DateTimeField()

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "trade_ledger_checkpoints"

    def __str__(self) -> str:
        return f"{self.fills} fills through {self.through_executed_at:%Y-%m-%d %H:%M}"

    @property
    def place(self) -> tuple:
        """Its last fill's place in ledger order: (executed_at, history row id)."""
        return (self.through_executed_at, self.through_history_id)

    def after(self) -> Q:
        """History rows placed after its last fill in ledger order."""
        at, history_id = self.place
        return Q(executed_at__gt=at) | Q(executed_at=at, id__gt=history_id)
