"""The ledger checkpoint: a claim replays only the fills after the user's checkpoint, and
what it finds is exactly what replaying every fill finds. The replay rules on their own
(pure), then claims on real PostgreSQL (and SQLite, the demo) against the simulator."""

import io
import random
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from ops.report import checkpoints_recount_differences
from tests.factories import (
    PolicyFactory,
    TradeExecutionFactory,
    TradeHistoryFactory,
    TradeProposalFactory,
)
from tests.portfolio.test_ledger import fill as ledger_fill
from trading import selectors
from trading.claim import execution_claim
from trading.ledger import Fill, position_from_state, position_state, positions_from_fills
from trading.models import LedgerCheckpoint, TradeExecution, TradeHistory
from trading.preflight import preflight_preview
from trading.selectors import history_fills, holdings_get


def random_fills(seed: int, count: int = 60) -> list[Fill]:
    """Buys and sells of two assets, some selling more than is held, with fees in EUR, in
    the asset itself and in a third currency nobody converted."""
    rng = random.Random(seed)
    fills = []
    for number in range(count):
        asset = rng.choice(["BTC", "ETH"])
        price = Decimal(rng.randint(1000, 90000)) / Decimal(rng.choice([1, 3, 7]))
        quantity = Decimal(rng.randint(1, 10**8)) / Decimal(10**10)
        side = "sell" if number == 30 else rng.choice(["buy", "buy", "sell"])
        if number == 30:
            quantity = Decimal("5")  # more than was ever bought: oversold
        fee_currency = rng.choice(["EUR", "EUR", asset, "BNB"])
        fee = Decimal(rng.randint(0, 10**6)) / Decimal(10**9)
        fills.append(
            ledger_fill(number, side, quantity, price, fee, asset=asset, fee_currency=fee_currency)
        )
    return fills


@pytest.mark.parametrize("seed", range(5))
def test_going_on_from_a_kept_state_gives_every_figure_a_whole_replay_gives(seed):
    fills = random_fills(seed)
    whole = positions_from_fills(fills)
    assert any(p.unmatched_quantity for p in whole.values())  # an oversold sell is in it
    for split in range(len(fills) + 1):
        kept = positions_from_fills(fills[:split])
        states = {asset: position_state(p) for asset, p in kept.items()}
        start = {asset: position_from_state(state) for asset, state in states.items()}

        resumed = positions_from_fills(fills[split:], start=start)

        assert resumed == whole, split
        # Exact to the last digit, not only equal in value.
        assert {a: position_state(p) for a, p in resumed.items()} == {
            a: position_state(p) for a, p in whole.items()
        }
        # The start it went on from is left as it was.
        assert {a: position_state(p) for a, p in start.items()} == states


# --- claims ----------------------------------------------------------------------------------


@pytest.fixture
def policy(db, monkeypatch):
    # A checkpoint after three settled fills, so a few fills show what thousands would.
    monkeypatch.setattr(selectors, "CHECKPOINT_EVERY", 3)
    return PolicyFactory(
        max_daily_trades=50,
        max_trades_per_hour=50,
        cooldown_minutes=0,
        anti_flip_minutes=0,
        max_order_eur=Decimal("500"),
    )


def fill(user, side: str, quantity: str, price: str, *, hours_ago: float) -> TradeHistory:
    """One filled order of the user's, as the finish step records it."""
    at = timezone.now() - timedelta(hours=hours_ago)
    quantity, price = Decimal(quantity), Decimal(price)
    execution = TradeExecutionFactory(
        user=user,
        proposal__user=user,
        proposal__side=side,
        status=TradeExecution.Status.SUBMITTED,
        exchange_order_id=f"order-{uuid.uuid4()}",
        claimed_at=at,
        submitting_at=at,
        finished_at=at,
    )
    return TradeHistoryFactory(
        execution=execution,
        side=side,
        amount=quantity,
        amount_eur=quantity * price,
        price=price,
        fee=Decimal("0.05"),
        fee_currency="EUR",
        fee_eur=Decimal("0.05"),
        executed_at=at,
    )


def replayed(user) -> dict:
    """Every fill of the user's replayed from the first: what the checkpoint must match."""
    positions = positions_from_fills(history_fills(TradeHistory.objects.filter(user=user)))
    return {asset: position_state(p) for asset, p in positions.items()}


def claim(user) -> None:
    execution_claim(proposal=TradeProposalFactory(user=user, approved=True), actor_id=None)


def kept_figures(user) -> dict:
    return {a: position_state(p) for a, p in holdings_get(user=user).positions.items()}


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_a_claim_keeps_the_settled_fills_and_later_reads_go_on_from_them(policy, exchange):
    user = policy.user
    settled = [
        fill(user, "buy", "0.01", "40000", hours_ago=5),
        fill(user, "buy", "0.02", "45000", hours_ago=4),
        fill(user, "sell", "0.015", "50000", hours_ago=3),
    ]
    fill(user, "buy", "0.001", "52000", hours_ago=0.2)  # within the hour: not settled yet

    claim(user)

    checkpoint = LedgerCheckpoint.objects.get(user=user)
    assert checkpoint.fills == 3
    assert checkpoint.through_history_id == settled[-1].pk
    assert checkpoint.through_executed_at == settled[-1].executed_at
    three = positions_from_fills(
        history_fills(TradeHistory.objects.filter(pk__in=[h.pk for h in settled]))
    )
    assert checkpoint.positions == {a: position_state(p) for a, p in three.items()}
    # Reads go on from it and find what a whole replay finds.
    assert kept_figures(user) == replayed(user)
    preview = preflight_preview(proposal=TradeProposalFactory(user=user, approved=True))
    assert preview.passed, preview.failed_codes
    # And they really start from it: a checkpoint that said otherwise would be believed.
    checkpoint.positions["BTC"]["quantity"] = "7"
    checkpoint.save()
    assert holdings_get(user=user).quantity("BTC") == Decimal("7") + Decimal("0.001")


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_a_fill_recorded_after_the_checkpoint_but_placed_before_it_is_not_missed(policy, exchange):
    user = policy.user
    for hours in (6, 5, 4):
        fill(user, "buy", "0.01", "40000", hours_ago=hours)
    claim(user)
    assert LedgerCheckpoint.objects.get(user=user).fills == 3

    # A fill the exchange executed before the checkpoint's last one, recorded only now.
    late = fill(user, "sell", "0.005", "60000", hours_ago=5.5)

    assert kept_figures(user) == replayed(user)
    assert holdings_get(user=user).quantity("BTC") == Decimal("0.025")
    # The next claim takes the checkpoint again, with the late fill in it.
    claim(user)
    checkpoint = LedgerCheckpoint.objects.get(user=user)
    assert checkpoint.fills == 4
    assert checkpoint.last_history_id == late.pk
    assert checkpoint.positions == replayed(user)


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_an_open_claim_holds_the_checkpoint_back_before_it(policy, exchange):
    user = policy.user
    old = [fill(user, "buy", "0.01", "40000", hours_ago=h) for h in (9, 8, 7)]
    # Claimed three hours ago and still being sent: its fills may come with any time after.
    open_at = timezone.now() - timedelta(hours=3)
    TradeExecutionFactory(
        user=user,
        proposal__user=user,
        status=TradeExecution.Status.SUBMITTING,
        claimed_at=open_at,
        submitting_at=open_at,
    )
    for hours in (3.5, 2, 1.5):
        fill(user, "buy", "0.01", "40000", hours_ago=hours)

    claim(user)

    checkpoint = LedgerCheckpoint.objects.get(user=user)
    assert checkpoint.fills == 3  # only the fills before the open claim's start, less the hour
    assert checkpoint.through_history_id == old[-1].pk
    assert kept_figures(user) == replayed(user)


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_a_preview_reads_the_checkpoint_but_never_writes_one(policy, exchange):
    user = policy.user
    for hours in (6, 5, 4):
        fill(user, "buy", "0.01", "40000", hours_ago=hours)

    preflight_preview(proposal=TradeProposalFactory(user=user, approved=True))
    holdings_get(user=user)

    assert not LedgerCheckpoint.objects.filter(user=user).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.sqlite
def test_the_report_recounts_every_checkpoint_and_says_which_differs(policy, exchange):
    user = policy.user
    for hours in (30, 29, 28):  # before the report's day: no order of theirs to look up
        fill(user, "buy", "0.01", "40000", hours_ago=hours)
    claim(user)
    # A fill recorded since, placed before the checkpoint, is the claims' to find.
    fill(user, "buy", "0.01", "40000", hours_ago=31)

    assert checkpoints_recount_differences() == []

    checkpoint = LedgerCheckpoint.objects.get(user=user)
    checkpoint.positions["BTC"]["cost_eur"] = "1"
    checkpoint.save()
    assert checkpoints_recount_differences() == [user.pk]
    with pytest.raises(CommandError, match=f"CHECKPOINT_DIFFERS: user\\(s\\) {user.pk}:"):
        call_command("oracle_report", stdout=io.StringIO())
