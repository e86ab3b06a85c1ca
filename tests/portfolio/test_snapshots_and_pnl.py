"""Daily value snapshots (beat), profit since a day from them, and their beat entries."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from portfolio.models import PortfolioSnapshot
from portfolio.selectors import pnl_since, portfolio_get
from portfolio.services import portfolio_snapshot_take, portfolio_snapshots_take_all
from tests.factories import UserFactory
from tests.portfolio.conftest import history
from tests.portfolio.test_positions_api import T0, alices_fills

pytestmark = pytest.mark.django_db


def snapshot(user, day, *, realized, unrealized):
    return PortfolioSnapshot.objects.create(
        user=user,
        day=day,
        value_eur=Decimal("1000"),
        cost_eur=Decimal("900"),
        unrealized_pnl_eur=Decimal(unrealized),
        realized_pnl_eur=Decimal(realized),
        fees_eur=Decimal("1"),
        taken_at=datetime.combine(day, datetime.min.time(), tzinfo=UTC),
    )


def test_a_snapshot_per_user_and_day_replaced_by_the_days_later_valuation(priced):
    alice = UserFactory(username="alice")
    alices_fills(alice)
    UserFactory(username="nobody-traded")
    morning = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)

    assert portfolio_snapshots_take_all(now=morning) == 1
    priced.control.set_price("BTC-EUR", "56000")
    cache.clear()  # hours later: the cached price has long expired
    portfolio_snapshots_take_all(now=morning + timedelta(hours=12))

    [row] = PortfolioSnapshot.objects.all()
    assert (row.user, row.day, row.taken_at) == (
        alice,
        date(2026, 3, 10),
        morning + timedelta(hours=12),
    )
    assert row.value_eur == Decimal("0.015") * 56000 + Decimal("1197.6")
    assert row.cost_eur.quantize(Decimal("0.000001")) == Decimal("1650.623999")
    assert row.realized_pnl_eur.quantize(Decimal("0.000001")) == Decimal("491.998999")
    assert row.unpriced == []


def test_an_unpriced_asset_leaves_the_snapshot_without_a_value(exchange):
    alice = UserFactory(username="alice")
    history(alice, "ZQX-EUR", "buy", "10", "2", "0.05", T0)

    row = portfolio_snapshot_take(user=alice, now=T0 + timedelta(days=1))

    assert row.value_eur is None and row.unrealized_pnl_eur is None
    assert row.cost_eur == Decimal("20.05")
    assert row.unpriced == [{"asset": "ZQX", "code": "PRICE_UNAVAILABLE"}]


def test_profit_since_a_day_is_the_total_now_minus_the_last_snapshot_before_it(priced):
    alice = UserFactory(username="alice")
    alices_fills(alice)  # realised 491.998999 + unrealised 371.976001 = 863.975 now
    snapshot(alice, date(2026, 3, 9), realized="400", unrealized="100")
    snapshot(alice, date(2026, 3, 10), realized="999", unrealized="999")  # that day itself
    portfolio = portfolio_get(user=alice)

    assert portfolio.total_pnl_eur == Decimal("863.975")
    assert pnl_since(user=alice, portfolio=portfolio, day=date(2026, 3, 10)).pnl_eur == Decimal(
        "363.975"
    )
    # Before the first fill, the total was zero: no snapshot needed.
    assert pnl_since(user=alice, portfolio=portfolio, day=date(2026, 3, 1)).pnl_eur == Decimal(
        "863.975"
    )
    # Fills before the day but no snapshot: unknown, and why.
    unknown = pnl_since(user=alice, portfolio=portfolio, day=date(2026, 3, 5))
    assert unknown.pnl_eur is None and unknown.reason.startswith("NO_SNAPSHOT")


def test_the_beat_entries_are_registered_by_setup_periodic_tasks():
    call_command("setup_periodic_tasks")
    call_command("setup_periodic_tasks")  # idempotent

    snapshots = PeriodicTask.objects.get(task="portfolio.tasks.snapshot_portfolios")
    assert (snapshots.interval.every, snapshots.interval.period) == (3600, "seconds")
    [summary] = PeriodicTask.objects.filter(task="portfolio.tasks.send_daily_summaries")
    assert summary.interval is None and summary.enabled
    crontab = summary.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "5",
        "0",
        "*",
        "UTC",
    )
