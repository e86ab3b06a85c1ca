from datetime import datetime
from decimal import Decimal

from exchange.models import BalanceSnapshot


def balance_latest(asset: str) -> tuple[Decimal, datetime] | None:
    row = BalanceSnapshot.objects.filter(asset=asset).values_list("available", "fetched_at").first()
    return (row[0], row[1]) if row else None
