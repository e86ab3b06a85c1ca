"""Finishes that add to the same account-flow rows at once, on real PostgreSQL in parallel
threads (each its own connection): they wait for each other, never deadlock, and every
addition is counted."""

import random
from collections import Counter

import pytest
from django.db import transaction

from tests.factories import TradeHistoryFactory
from tests.threads import run_in_parallel
from trading.flows import account_flows_add
from trading.models import AccountFlow

pytestmark = pytest.mark.django_db(transaction=True)

ASSETS = ("BTC", "ETH", "SOL", "ADA")


def amounts() -> dict:
    return dict(AccountFlow.objects.values_list("asset", "amount"))


def chosen_rows(seed: int) -> list[tuple[str, ...]]:
    """What one competitor adds: 60 finishes, each with the fills of 2 to 4 assets."""
    rng = random.Random(seed)
    return [tuple(rng.sample(ASSETS, rng.choice([2, 3, 4]))) for _ in range(60)]


def test_finishes_adding_to_the_same_rows_in_any_order_never_deadlock():
    rows = {asset: TradeHistoryFactory(market=f"{asset}-EUR") for asset in ASSETS}
    # What one addition of each asset's fill moves (its asset and EUR), measured; the
    # updates also leave the rows no longer lying in the order of their names, so an update
    # that follows where they lie meets them in another order than a competitor's.
    moves = {}
    for asset in reversed(ASSETS):
        start = amounts()
        with transaction.atomic():
            account_flows_add([rows[asset]])
        moves[asset] = {a: amount - start.get(a, 0) for a, amount in amounts().items()}
    before = amounts()

    def finishes(seed):
        for chosen in chosen_rows(seed):
            with transaction.atomic():
                account_flows_add([rows[asset] for asset in chosen])
        return "done"

    results = run_in_parallel(finishes, [(seed,) for seed in range(8)])

    assert results == ["done"] * 8  # a deadlock would stand here as an OperationalError
    # Every addition counted, exactly once.
    added = Counter(asset for seed in range(8) for chosen in chosen_rows(seed) for asset in chosen)
    expected = {
        a: before[a] + sum(count * moves[asset].get(a, 0) for asset, count in added.items())
        for a in before
    }
    assert amounts() == expected
