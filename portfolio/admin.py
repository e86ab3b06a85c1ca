from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin
from portfolio.models import PortfolioSnapshot


@admin.register(PortfolioSnapshot)
class PortfolioSnapshotAdmin(ReadOnlyAdmin):
    list_display = (
        "day",
        "user",
        "value_eur",
        "cost_eur",
        "unrealized_pnl_eur",
        "realized_pnl_eur",
        "fees_eur",
        "portfolio",
    )
    list_filter = ("day",)
    list_select_related = ("user",)
    date_hierarchy = "day"
    search_fields = ("user__username",)

    @admin.display(description="portfolio page")
    def portfolio(self, snapshot: PortfolioSnapshot) -> str:
        url = reverse("admin-portfolio") + f"?user={snapshot.user_id}"
        return format_html('<a href="{}">open</a>', url)
