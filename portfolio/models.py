from django.conf import settings
from django.db import models
from django.db.models import Q

from core.scoping import UserOwnedQuerySet


class PortfolioSnapshot(models.Model):
    """A user's portfolio on one UTC day, as last valued that day (the beat upserts the day's
    row every hour, so it ends close to the day's close). Figures are exact EUR; value and
    unrealised profit are empty when some held asset could not be priced (`unpriced`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portfolio_snapshots"
    )
    day = models.DateField()
    value_eur = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    cost_eur = models.DecimalField(max_digits=30, decimal_places=12)
    unrealized_pnl_eur = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True
    )
    realized_pnl_eur = models.DecimalField(max_digits=30, decimal_places=12)
    fees_eur = models.DecimalField(max_digits=30, decimal_places=12)
    # Held assets whose last price could not be read: [{"asset", "code"}].
    unpriced = models.JSONField(default=list, blank=True)
    taken_at = models.DateTimeField()

    objects = UserOwnedQuerySet.as_manager()

    class Meta:
        db_table = "portfolio_snapshots"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "day"],
                name="portfolio_snapshots_one_per_day",
                violation_error_code="PORTFOLIO_SNAPSHOT_EXISTS",
            ),
            models.CheckConstraint(
                condition=Q(value_eur__isnull=True) | Q(unrealized_pnl_eur__isnull=False),
                name="portfolio_snapshots_valued_whole",
                violation_error_code="PORTFOLIO_SNAPSHOT_PARTIAL",
            ),
        ]

    def __str__(self) -> str:
        return f"Portfolio of {self.user} on {self.day}"

    @property
    def total_pnl_eur(self):
        """Realised plus unrealised; None when the value is unknown."""
        if self.unrealized_pnl_eur is None:
            return None
        return self.realized_pnl_eur + self.unrealized_pnl_eur
