"""Three personas and their data, shared by the API and admin isolation tests.

alice owns everything below; bob is another user with his own policy; charlie is staff who
may view the console but holds none of the permissions that change anything, and
charlie_bare is staff with no permission at all. Every row of
alice carries the marker "ZQX" (a market, a model name) so a leak shows in any answer.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.apps import apps
from django.contrib.auth.models import Permission
from django.urls import URLResolver, get_resolver
from django.utils import timezone

from exchange.models import BalanceSnapshot, ExchangeCall
from tests.factories import (
    AdvisorDecisionFactory,
    GptUsageLogFactory,
    NotificationDeliveryFactory,
    NotificationSettingsFactory,
    PolicyFactory,
    PortfolioSnapshotFactory,
    ProposalEventFactory,
    ProposalOutcomeFactory,
    ScanJobFactory,
    TradeExecutionFactory,
    TradeHistoryFactory,
    TradeProposalFactory,
    UserFactory,
)
from trading.models import AccountFunds, AllocationChange, EmergencyStop

OUR_APPS = (
    "trading",
    "notifications",
    "scheduler",
    "budget",
    "exchange",
    "evaluation",
    "portfolio",
)
MARKER = "ZQX"
MARKET = f"{MARKER}-EUR"


def our_models():
    return [m for m in apps.get_models() if m._meta.app_label in OUR_APPS]


def database_state() -> dict[str, list[dict]]:
    """Every row of every table of the product: compared before and after a refusal."""
    return {m._meta.label: list(m.objects.order_by("pk").values()) for m in our_models()}


def owned_state(user) -> dict[str, list[dict]]:
    """Every row a user owns (tables with a user column)."""
    return {
        m._meta.label: list(m.objects.filter(user=user).order_by("pk").values())
        for m in our_models()
        if any(f.name == "user" for f in m._meta.fields)
    }


def view_only_staff(username: str):
    """Staff who can open every page of the console and change nothing."""
    user = UserFactory(username=username, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=OUR_APPS, codename__startswith="view_"
        )
    )
    return user


class World:
    def __init__(self) -> None:
        self.alice = PolicyFactory(
            user=UserFactory(username="alice"), allowlist=[MARKET], max_order_eur=77
        ).user
        self.bob = PolicyFactory(user=UserFactory(username="bob")).user
        self.charlie = view_only_staff("charlie")
        self.charlie_bare = UserFactory(username="charlie-bare", is_staff=True)
        self.policy = self.alice.trading_policy
        self.proposal = TradeProposalFactory(user=self.alice, market=MARKET, rationale=MARKER)
        self.approved = TradeProposalFactory(user=self.alice, market=MARKET, approved=True)
        self.history = TradeHistoryFactory(
            execution__proposal__user=self.alice, execution__proposal__market=MARKET
        )
        self.execution = TradeExecutionFactory(proposal__user=self.alice, proposal__market=MARKET)
        self.event = ProposalEventFactory(proposal=self.proposal)
        now = timezone.now()
        self.scan_job = ScanJobFactory(
            user=self.alice,
            markets=[MARKET],
            last_finished_at=now,
            locked_at=now,
            locked_by="worker-1",
            lock_token=uuid.uuid4(),
            lock_expires_at=now + timedelta(minutes=2),
        )
        self.usage = GptUsageLogFactory(user=self.alice, model=f"{MARKER}-model", status="RESERVED")
        self.decision = AdvisorDecisionFactory(
            user=self.alice,
            scan_job=self.scan_job,
            model=f"{MARKER}-model",
            decision="propose",
            proposal=self.proposal,
        )
        self.outcome = ProposalOutcomeFactory(proposal=self.proposal, horizon_hours=24)
        mail = f"{MARKER}@example.com"
        self.notification_settings = NotificationSettingsFactory(user=self.alice, email=mail)
        self.delivery = NotificationDeliveryFactory(user=self.alice, destination=mail)
        self.snapshot = PortfolioSnapshotFactory(
            user=self.alice,
            value_eur=None,
            unrealized_pnl_eur=None,
            unpriced=[{"asset": MARKER, "code": "PRICE_UNAVAILABLE"}],
        )
        self.stop = EmergencyStop.objects.get()
        # Process-wide audit rows, not owned by a user: staff may read them, nobody edits them.
        self.exchange_call = ExchangeCall.objects.create(
            key_role="trade", method="POST", path="/order", status_code=200, latency_ms=5
        )
        self.balance = BalanceSnapshot.objects.create(
            asset=MARKER, available=1, in_order=0, fetched_at=now
        )
        self.allocation_change = AllocationChange.objects.create(
            user=self.alice, actor=self.charlie, before_eur=0, after_eur=77
        )
        self.account_funds = AccountFunds.objects.create(asset=MARKER, amount=1)


def url_routes(patterns=None, prefix: str = ""):
    """(full route, pattern) of every URL, through the apps' included urls.py; the admin
    site's own URLs (namespace "admin") are not descended into."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if pattern.namespace is None:
                yield from url_routes(pattern.url_patterns, route)
        else:
            yield route, pattern
