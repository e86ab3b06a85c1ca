from decimal import Decimal

import pytest

from tests.factories import PolicyFactory
from trading.models import Policy

pytestmark = pytest.mark.django_db

CHANGED_VALUES = {
    "trading_enabled": False,
    "allowlist": ["BTC-EUR"],
    "min_order_eur": Decimal("11"),
    "max_order_eur": Decimal("99"),
    "min_confidence": 75,
    "cooldown_minutes": 61,
    "anti_flip_minutes": 241,
    "max_daily_trades": 6,
    "max_trades_per_hour": 3,
    "allocation_eur": Decimal("999"),
    "gpt_daily_limit": 49,
    "gpt_hourly_limit": 7,
    "scan_interval_minutes": 16,
    "proposal_ttl_minutes": 31,
    "max_price_drift_pct": Decimal("2.5"),
}


def test_equal_policies_have_the_same_hash():
    first = PolicyFactory(allowlist=["ETH-EUR", "BTC-EUR"])
    second = PolicyFactory(allowlist=["BTC-EUR", "ETH-EUR"], min_order_eur=Decimal("10.00"))
    assert first.snapshot_and_hash()[1] == second.snapshot_and_hash()[1]


def test_the_hash_survives_a_round_trip_through_the_database():
    policy = PolicyFactory()
    before = policy.snapshot_and_hash()
    assert Policy.objects.get(pk=policy.pk).snapshot_and_hash() == before


def test_every_snapshot_field_is_covered_by_the_test():
    assert set(CHANGED_VALUES) == set(Policy.SNAPSHOT_FIELDS)


@pytest.mark.parametrize("field", sorted(CHANGED_VALUES))
def test_changing_any_field_changes_the_hash(field):
    policy = PolicyFactory()
    _, before = policy.snapshot_and_hash()
    setattr(policy, field, CHANGED_VALUES[field])
    _, after = policy.snapshot_and_hash()
    assert after != before


def test_the_snapshot_is_plain_json_with_decimals_as_strings():
    snapshot = PolicyFactory().snapshot()
    assert snapshot["min_order_eur"] == "10.00"
    assert snapshot["allowlist"] == ["BTC-EUR", "ETH-EUR"]
