from django.contrib import admin

from .models import (
    EmergencyStop,
    Policy,
    ProposalEvent,
    TradeExecution,
    TradeHistory,
    TradeProposal,
)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("user", "trading_enabled", "allowlist", "min_order_eur", "max_order_eur")
    list_select_related = ("user",)


@admin.register(EmergencyStop)
class EmergencyStopAdmin(admin.ModelAdmin):
    list_display = ("__str__", "reason", "changed_by", "changed_at")


@admin.register(TradeProposal)
class TradeProposalAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "market", "side", "amount_eur", "confidence", "status")
    list_filter = ("status", "side", "source")
    list_select_related = ("user",)
    search_fields = ("market", "user__username")


@admin.register(ProposalEvent)
class ProposalEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "proposal", "kind", "actor")
    list_select_related = ("proposal", "actor")


@admin.register(TradeExecution)
class TradeExecutionAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "proposal", "status", "exchange_order_id", "error_code")
    list_filter = ("status",)
    list_select_related = ("user", "proposal")


@admin.register(TradeHistory)
class TradeHistoryAdmin(admin.ModelAdmin):
    list_display = ("executed_at", "user", "market", "side", "amount", "price", "fee")
    list_select_related = ("user",)
