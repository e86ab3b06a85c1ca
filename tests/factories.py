"""factory-boy factories for every model, with safe defaults for a tradeable proposal."""

import functools
import uuid
from datetime import timedelta
from decimal import Decimal

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken
from accounts.services import VERIFIED_AT_SESSION_KEY
from budget.models import GptUsageLog
from evaluation.models import AdvisorDecision, ProposalOutcome
from notifications.models import NotificationDelivery, NotificationEvent, NotificationSettings
from portfolio.models import PortfolioSnapshot
from scheduler.models import ScanJob
from trading.flows import account_flows_add
from trading.models import (
    EmergencyStop,
    Policy,
    ProposalEvent,
    TradeExecution,
    TradeHistory,
    TradeProposal,
)


@functools.cache
def _password_hash(hashers: tuple[str, ...]) -> str:
    # Per hasher setting: some tests switch to a fast hasher, and a hash made under theirs
    # would not log in under the default one (whichever test happens to run first).
    return make_password("correct horse battery staple")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    # Hashed once per run, not once per user: PBKDF2 is slow on purpose.
    password = factory.LazyFunction(lambda: _password_hash(tuple(settings.PASSWORD_HASHERS)))


def api_token(user, *, scope: str = "trade", name: str = "test") -> str:
    """A new API token of `user`, stored hashed as the product does; returns the token the
    client sends (`Authorization: Token <it>`)."""
    _, token = ApiToken.objects.create(user=user, name=name, scope=scope)
    return token


def totp_device(user):
    """A confirmed TOTP device of `user` (its `bin_key` computes the current code)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.create(user=user, name="test", confirmed=True)


def login_verified(client, user) -> None:
    """Signs `user` in on the test client as after entering a TOTP code just now (staff who
    may move money need it to reach the console)."""
    import time

    from django_otp import DEVICE_ID_SESSION_KEY

    device = totp_device(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[VERIFIED_AT_SESSION_KEY] = int(time.time())
    session.save()


class PolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Policy

    user = factory.SubFactory(UserFactory)
    trading_enabled = True
    allowlist = factory.LazyFunction(lambda: ["BTC-EUR", "ETH-EUR"])
    min_order_eur = Decimal("10")
    max_order_eur = Decimal("100")
    min_confidence = 50
    # Room for the buys a test makes; allocation tests set their own.
    allocation_eur = Decimal("1000")


class EmergencyStopFactory(factory.django.DjangoModelFactory):
    """The single stop row (a migration creates it); the factory updates it in place."""

    class Meta:
        model = EmergencyStop
        django_get_or_create = ("id",)

    id = EmergencyStop.SINGLETON_ID
    active = False


class ScanJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScanJob

    user = factory.SubFactory(UserFactory)
    markets = factory.LazyFunction(lambda: ["BTC-EUR"])
    interval_minutes = 15


class TradeProposalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TradeProposal

    user = factory.SubFactory(UserFactory)
    market = "BTC-EUR"
    side = "buy"
    amount_eur = Decimal("25.00")
    confidence = 75
    rationale = "Momentum is up over 24 hours."
    status = TradeProposal.Status.PENDING
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=30))
    source = TradeProposal.Source.SCAN
    policy_snapshot = factory.LazyAttribute(lambda p: Policy(user=p.user).snapshot())
    policy_hash = factory.LazyAttribute(lambda p: Policy.hash_snapshot(p.policy_snapshot))

    class Params:
        approved = factory.Trait(
            status=TradeProposal.Status.APPROVED,
            decided_at=factory.LazyFunction(timezone.now),
            decided_by=factory.SelfAttribute("user"),
        )


class ProposalEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProposalEvent

    proposal = factory.SubFactory(TradeProposalFactory)
    user = factory.SelfAttribute("proposal.user")
    kind = ProposalEvent.Kind.CREATED


class TradeExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TradeExecution

    proposal = factory.SubFactory(TradeProposalFactory, approved=True)
    user = factory.SelfAttribute("proposal.user")
    market = factory.SelfAttribute("proposal.market")
    side = factory.SelfAttribute("proposal.side")
    amount_eur = factory.SelfAttribute("proposal.amount_eur")
    policy_hash = factory.SelfAttribute("proposal.policy_hash")
    policy_snapshot = factory.SelfAttribute("proposal.policy_snapshot")
    claimed_at = factory.LazyFunction(timezone.now)


class TradeHistoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TradeHistory

    execution = factory.SubFactory(
        TradeExecutionFactory,
        status=TradeExecution.Status.SUBMITTED,
        exchange_order_id=factory.Faker("uuid4"),
        submitting_at=factory.LazyFunction(timezone.now),
    )
    user = factory.SelfAttribute("execution.user")
    market = factory.SelfAttribute("execution.market")
    asset = factory.LazyAttribute(lambda h: h.market.split("-")[0])
    side = factory.SelfAttribute("execution.side")
    amount = Decimal("0.0005")
    amount_eur = Decimal("25")
    price = Decimal("50000")
    fee = Decimal("0.0625")
    executed_at = factory.LazyFunction(timezone.now)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # As the finish step records a fill, in one transaction: its moves go to the kept
        # account flows too.
        with transaction.atomic():
            row = super()._create(model_class, *args, **kwargs)
            order = row.execution.bitvavo_response or {}
            account_flows_add([row], order_fee_currency=str(order.get("feeCurrency") or ""))
        return row


class GptUsageLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GptUsageLog

    user = factory.SubFactory(UserFactory)
    model = "gpt-4o-mini"
    reason = "scan"
    tokens_estimate = 800


class NotificationSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationSettings

    user = factory.SubFactory(UserFactory)
    webhook_secret = factory.LazyFunction(lambda: "s" * 64)


class NotificationDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationDelivery

    user = factory.SubFactory(UserFactory)
    event = NotificationEvent.KILL_SWITCH
    channel = NotificationDelivery.Channel.EMAIL
    destination = "someone@example.com"
    dedupe_key = factory.Sequence(lambda n: f"kill_switch:{n}")
    subject = "Trading turned off"
    payload = factory.LazyFunction(dict)


class AdvisorDecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AdvisorDecision

    user = factory.SubFactory(UserFactory)
    advisor = "llm"
    model = "gpt-4o-mini"
    prompt_version = "v3"
    input = factory.LazyFunction(lambda: {"markets": {}, "limits": {}, "track_record": []})
    raw_reply = '{"decision": "no_trade"}'
    decision = AdvisorDecision.Decision.NO_TRADE
    prompt_tokens = 300
    completion_tokens = 40
    cost_eur = Decimal("0.00006400")


class ProposalOutcomeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProposalOutcome

    proposal = factory.SubFactory(TradeProposalFactory)
    user = factory.SelfAttribute("proposal.user")
    horizon_hours = 24
    candle_at = factory.LazyFunction(timezone.now)
    entry_price = Decimal("60000")
    price = Decimal("61200")
    net_return = Decimal("0.015")
    hit = True


class PortfolioSnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PortfolioSnapshot

    user = factory.SubFactory(UserFactory)
    day = factory.LazyFunction(lambda: timezone.now().date())
    value_eur = Decimal("27.50")
    cost_eur = Decimal("25.0625")
    unrealized_pnl_eur = Decimal("2.4375")
    realized_pnl_eur = Decimal("0")
    fees_eur = Decimal("0.0625")
    taken_at = factory.LazyFunction(timezone.now)


def holding_give(
    user,
    *,
    market: str = "BTC-EUR",
    quantity: Decimal | str = "0.01",
    price: Decimal | str = "50000",
) -> TradeHistory:
    """The user holds `quantity` of the market's asset: one filled buy in their ledger, a
    month ago (so no cooldown, anti-flip or cap counts it), bought at `price` without fee.
    Its cost (quantity x price) counts in the user's allocation like any open position."""
    quantity, price = Decimal(str(quantity)), Decimal(str(price))
    at = timezone.now() - timedelta(days=30)
    amount_eur = (quantity * price).quantize(Decimal("0.01"))
    execution = TradeExecutionFactory(
        user=user,
        proposal__user=user,
        proposal__market=market,
        proposal__side="buy",
        proposal__amount_eur=amount_eur,
        status=TradeExecution.Status.SUBMITTED,
        exchange_order_id=f"held-{uuid.uuid4()}",
        exchange_status="filled",
        filled_amount=quantity,
        filled_eur=quantity * price,
        fee_eur=Decimal("0"),
        claimed_at=at,
        submitting_at=at,
        finished_at=at,
    )
    return TradeHistoryFactory(
        execution=execution,
        amount=quantity,
        amount_eur=quantity * price,
        price=price,
        fee=Decimal("0"),
        fee_currency="EUR",
        fee_eur=Decimal("0"),
        executed_at=at,
    )
