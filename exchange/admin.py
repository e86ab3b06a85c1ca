from django.contrib import admin

from core.admin import ReadOnlyAdmin
from exchange.models import BalanceSnapshot, ExchangeCall


@admin.register(ExchangeCall)
class ExchangeCallAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "key_role",
        "method",
        "path",
        "status_code",
        "error_code",
        "error_kind",
        "latency_ms",
        "client_order_id",
    )
    list_filter = ("key_role", "method", "error_kind", "status_code")
    search_fields = ("client_order_id", "path", "error_code")
    date_hierarchy = "created_at"


@admin.register(BalanceSnapshot)
class BalanceSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("asset", "available", "in_order", "fetched_at")
