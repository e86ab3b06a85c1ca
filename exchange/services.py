from django.db import transaction
from django.utils import timezone

from exchange.models import BalanceSnapshot
from exchange.readonly import ReadonlyClient


def balances_refresh(*, client: ReadonlyClient | None = None) -> int:
    """Stores the account's balances, read with the read-only key; returns how many assets."""
    balances = (client or ReadonlyClient()).balance()
    now = timezone.now()
    with transaction.atomic():
        # Assets the exchange no longer lists have nothing left.
        BalanceSnapshot.objects.exclude(asset__in=[b.symbol for b in balances]).update(
            available=0, in_order=0, fetched_at=now
        )
        for balance in balances:
            BalanceSnapshot.objects.update_or_create(
                asset=balance.symbol,
                defaults={
                    "available": balance.available,
                    "in_order": balance.in_order,
                    "fetched_at": now,
                },
            )
    return len(balances)
