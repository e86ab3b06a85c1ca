from django.db import models


class ExchangeCall(models.Model):
    """Audit of a call to the exchange: every order placement, lookup and cancel.

    Written outside the caller's transaction, so it stays even when the caller rolls back.
    Never holds a secret or a signature.
    """

    key_role = models.CharField(max_length=10)  # "readonly" or "trade"
    method = models.CharField(max_length=6)
    path = models.CharField(max_length=500)
    request_body = models.JSONField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # NULL: no response
    response_body = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_kind = models.CharField(max_length=16, blank=True)
    latency_ms = models.PositiveIntegerField()
    client_order_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "exchange_calls"
        indexes = [
            # The retention sweep: calls about no order, oldest first (order calls are kept).
            models.Index(
                fields=["created_at"],
                condition=models.Q(client_order_id__isnull=True) & ~models.Q(key_role="trade"),
                name="exchange_calls_market_data",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status_code or self.error_code}"


class BalanceSnapshot(models.Model):
    """The account balance of one asset, as read with the read-only key.

    The trade key may not read balances (Bitvavo answers 311), so the executor's balance
    recheck uses the latest snapshot and subtracts what was claimed since.
    """

    asset = models.CharField(max_length=16, unique=True)
    available = models.DecimalField(max_digits=36, decimal_places=12)
    in_order = models.DecimalField(max_digits=36, decimal_places=12)
    fetched_at = models.DateTimeField()

    class Meta:
        db_table = "exchange_balances"

    def __str__(self) -> str:
        return f"{self.asset}: {self.available}"
