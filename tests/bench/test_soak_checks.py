"""The soak run's verdict rests on these counts: each window is the one the product's rules use."""

from datetime import UTC, datetime, timedelta, timezone

from bench.soak import busiest_day, busiest_hour, spacing_violations

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def minutes(*offsets):
    return [T + timedelta(minutes=m) for m in offsets]


def test_busiest_hour_counts_the_sliding_hour_ending_at_each_event():
    # (t - 1 h, t]: at +61 the events at +30, +59 and +61 are inside, the one at 0 is not.
    assert busiest_hour(minutes(0, 30, 59, 61)) == 3
    assert busiest_hour(minutes(61, 0, 59, 30)) == 3  # order does not matter


def test_busiest_hour_leaves_out_an_event_exactly_one_hour_before():
    # The hourly cap counts trades after now - 1 h, so these two never share a window.
    assert busiest_hour(minutes(0, 60)) == 1
    assert busiest_hour([]) == 0


def test_busiest_day_splits_at_utc_midnight():
    before = datetime(2026, 1, 1, 23, 59, tzinfo=UTC)
    after = datetime(2026, 1, 2, 0, 1, tzinfo=UTC)
    assert busiest_day([before, after]) == 1
    assert busiest_day([before, before - timedelta(hours=23), after]) == 2
    # 00:30 at UTC+2 is 22:30 UTC the day before: counted on that day.
    late_evening = datetime(2026, 1, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert busiest_day([before, late_evening, after]) == 2
    assert busiest_day([]) == 0


def test_cooldown_counts_any_trade_of_the_same_asset_too_soon():
    trades = [(T, "BTC", "buy"), (T + timedelta(minutes=4), "BTC", "sell")]
    assert spacing_violations(trades, 5, opposite=False) == 1
    assert spacing_violations(trades, 4, opposite=False) == 0  # exactly at the end is allowed
    other_asset = [(T, "BTC", "buy"), (T + timedelta(minutes=1), "ETH", "buy")]
    assert spacing_violations(other_asset, 5, opposite=False) == 0
    assert spacing_violations(trades, 0, opposite=False) == 0


def test_anti_flip_counts_only_the_opposite_side():
    same_side = [(T, "BTC", "buy"), (T + timedelta(minutes=1), "BTC", "buy")]
    flipped = [(T, "BTC", "buy"), (T + timedelta(minutes=1), "BTC", "sell")]
    assert spacing_violations(same_side, 10, opposite=True) == 0
    assert spacing_violations(flipped, 10, opposite=True) == 1
