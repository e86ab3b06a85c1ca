"""The approval console: staff work proposals from Django admin.

Thin: every action calls one service; confirmation pages list the selected proposals and,
for approve and execute, what every preflight rule says now. Execute claims and enqueues;
the page never calls the exchange with a trade key.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin, ScaledAdmin
from core.errors import DomainError
from trading import selectors, services
from trading.decision import chart_data, decision_state, proposal_decision
from trading.models import (
    AccountFunds,
    AllocationChange,
    EmergencyStop,
    Policy,
    ProposalEvent,
    TradeExecution,
    TradeHistory,
    TradeProposal,
)
from trading.preflight import preflight_preview


@admin.register(Policy)
class PolicyAdmin(ScaledAdmin):
    list_display = ("user", *Policy.SNAPSHOT_FIELDS)
    list_filter = ("trading_enabled",)
    list_select_related = ("user",)
    search_fields = ("user__username",)
    fields = ("user", *Policy.SNAPSHOT_FIELDS)
    actions = ("disable_trading",)

    def get_readonly_fields(self, request, obj=None):
        # A policy stays its user's: the service changes the rules, never the owner.
        return ("user",) if obj else ()

    @admin.action(description="Turn trading OFF for the selected users", permissions=["change"])
    def disable_trading(self, request, queryset: QuerySet[Policy]):
        for policy in queryset.select_related("user"):
            services.policy_trading_set(user=policy.user, enabled=False, actor=request.user)
        self.message_user(request, f"Trading turned off for {queryset.count()} user(s).")

    def save_model(self, request, obj, form, change):
        # Through the service, like the API: the same checks under the user's policy lock,
        # and a flipped kill switch is announced with who flipped it.
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name != "user"}
        policy = services.policy_update(user=obj.user, changes=changes, actor=request.user)
        obj.pk = policy.pk


@admin.register(EmergencyStop)
class EmergencyStopAdmin(ScaledAdmin):
    list_display = ("__str__", "reason", "changed_by", "changed_at")
    readonly_fields = ("changed_by", "changed_at")
    fields = ("active", "reason", "changed_by", "changed_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("trading.emergency_stop")

    def save_model(self, request, obj, form, change):
        # Through the service, so the change is recorded with who and when.
        services.emergency_stop_set(active=obj.active, actor=request.user, reason=obj.reason)


class ProposalEventInline(admin.TabularInline):
    model = ProposalEvent
    fields = ("created_at", "kind", "actor", "data")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class RejectForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class OverrideForm(forms.Form):
    override_cooldown = forms.BooleanField(required=False, label="Lift the cooldown")
    override_anti_flip = forms.BooleanField(required=False, label="Lift anti-flip")
    override_price_drift = forms.BooleanField(required=False, label="Lift the price-drift guard")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


@admin.register(TradeProposal)
class TradeProposalAdmin(ScaledAdmin):
    list_display = (
        "id",
        "user",
        "market",
        "side",
        "amount_eur",
        "confidence",
        "status",
        "partially_executed",
        "source",
        "age",
        "time_to_expiry",
        "overrides",
    )
    list_filter = ("status", "side", "source", "market")
    list_select_related = ("user",)
    search_fields = ("market", "user__username", "rationale")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("approve_selected", "reject_selected", "execute_selected")
    inlines = (ProposalEventInline,)
    readonly_fields = [f.name for f in TradeProposal._meta.fields] + ["exit_plan"]
    change_list_template = "admin/trading/tradeproposal/change_list.html"
    change_form_template = "admin/trading/tradeproposal/change_form.html"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        # A proposal is never edited as a form: decisions have their own buttons, and a Save
        # would only log a bogus "Changed" entry. The list's actions keep their own permissions.
        return False if obj is not None else super().has_change_permission(request)

    def has_approve_permission(self, request):
        return request.user.has_perm("trading.approve_proposal")

    def has_execute_permission(self, request):
        return request.user.has_perm("trading.execute_proposal")

    def has_override_permission(self, request):
        return request.user.has_perm("trading.override_guards")

    @admin.display(description="advisor's exit plan")
    def exit_plan(self, proposal: TradeProposal) -> str:
        """What the advisor said it would do next (no order uses it yet)."""
        decision = getattr(proposal, "advisor_decision", None)
        if decision is None:
            return "-"
        parts = [
            f"{label} {value}"
            for label, value in (
                ("stop-loss", decision.stop_loss),
                ("take-profit", decision.take_profit),
                ("within hours:", decision.exit_horizon_hours),
            )
            if value is not None
        ]
        if decision.invalidation:
            parts.append(f"invalid if: {decision.invalidation}")
        return "; ".join(parts) or "-"

    @admin.display(description="age")
    def age(self, proposal: TradeProposal) -> str:
        return _minutes(timezone.now() - proposal.created_at)

    @admin.display(description="expires in")
    def time_to_expiry(self, proposal: TradeProposal) -> str:
        if proposal.status not in (TradeProposal.Status.PENDING, TradeProposal.Status.APPROVED):
            return "-"  # decided or done: it no longer expires
        remaining = proposal.expires_at - timezone.now()
        return "expired" if remaining.total_seconds() <= 0 else _minutes(remaining)

    @admin.display(description="overrides")
    def overrides(self, proposal: TradeProposal) -> str:
        lifted = [
            n
            for n, on in (
                ("cooldown", proposal.override_cooldown),
                ("anti-flip", proposal.override_anti_flip),
                ("price drift", proposal.override_price_drift),
            )
            if on
        ]
        return ", ".join(lifted) or "-"

    # --- console header: kill switches ---

    def changelist_view(self, request, extra_context=None):
        extra_context = extra_context or {}
        extra_context["emergency_stop"] = selectors.emergency_stop_get()
        extra_context["can_stop"] = request.user.has_perm("trading.emergency_stop")
        return super().changelist_view(request, extra_context=extra_context)

    # --- the decision screen: the proposal's own page ---

    def change_view(self, request, object_id, form_url="", extra_context=None):
        proposal = self.get_object(request, unquote(object_id))
        extra_context = extra_context or {}
        if proposal is not None and request.method == "GET":
            decision = proposal_decision(user=request.user, proposal=proposal)
            extra_context.update(
                title=f"Proposal #{proposal.pk}: {proposal.side} {proposal.amount_eur} EUR of "
                f"{proposal.market}",
                decision=decision,
                chart=chart_data(decision),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def _decide(self, request, proposal_id: int, permission: str, decide, done: str):
        """One button of the decision screen: POST only, the permission, one service call
        (the one the API calls), a line in the admin log, back to the screen."""
        if request.method != "POST" or not request.user.has_perm(permission):
            raise PermissionDenied
        proposal = get_object_or_404(TradeProposal, pk=proposal_id)
        try:
            message = decide(proposal)
        except DomainError as error:
            codes = error.extra.get("failed_codes")
            why = ", ".join(codes) if codes else f"{error.code}: {error.message}"
            self.message_user(request, f"Not {done}: {why}", messages.ERROR)
        else:
            self.log_change(request, proposal, message)
            self.message_user(request, f"Proposal #{proposal.pk} {done}.")
        return redirect("admin:trading_tradeproposal_change", proposal.pk)

    def approve_view(self, request, proposal_id: int):
        def approve(proposal):
            services.proposal_approve(proposal=proposal, actor=request.user)
            return "Approved"

        return self._decide(request, proposal_id, "trading.approve_proposal", approve, "approved")

    def reject_view(self, request, proposal_id: int):
        form = RejectForm(request.POST)

        def reject(proposal):
            # The service refuses an empty reason with REASON_REQUIRED.
            reason = form.cleaned_data["reason"] if form.is_valid() else ""
            services.proposal_reject(proposal=proposal, actor=request.user, reason=reason)
            return f"Rejected: {reason}"

        return self._decide(request, proposal_id, "trading.approve_proposal", reject, "rejected")

    def execute_view(self, request, proposal_id: int):
        def execute(proposal):
            outcome = services.execution_request(proposal=proposal, actor=request.user)
            return f"Execution #{outcome.execution.pk} requested"

        return self._decide(
            request, proposal_id, "trading.execute_proposal", execute, "sent to the execute worker"
        )

    def state_view(self, request, proposal_id: int):
        """What the screen polls until the execution is final."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        proposal = get_object_or_404(TradeProposal, pk=proposal_id)
        return JsonResponse(decision_state(proposal=proposal))

    def get_urls(self):
        decide = [
            path(
                f"<int:proposal_id>/{name}/",
                self.admin_site.admin_view(view),
                name=f"trading_tradeproposal_{name}",
            )
            for name, view in (
                ("approve", self.approve_view),
                ("reject", self.reject_view),
                ("execute", self.execute_view),
                ("state", self.state_view),
            )
        ]
        own = [
            *decide,
            path(
                "emergency-stop/",
                self.admin_site.admin_view(self.emergency_stop_view),
                name="trading_emergency_stop_toggle",
            ),
            path(
                "<int:proposal_id>/override/",
                self.admin_site.admin_view(self.override_view),
                name="trading_tradeproposal_override",
            ),
        ]
        return own + super().get_urls()

    def emergency_stop_view(self, request):
        if request.method != "POST" or not request.user.has_perm("trading.emergency_stop"):
            raise PermissionDenied
        active = request.POST.get("active") == "1"
        reason = request.POST.get("reason", "").strip() or "Set from the approval console"
        stop = services.emergency_stop_set(active=active, actor=request.user, reason=reason)
        self.log_change(request, stop, f"Emergency stop {'on' if active else 'off'}: {reason}")
        state = "ON: every execution is halted" if active else "off"
        self.message_user(request, f"Emergency stop {state}.", messages.WARNING)
        return redirect("admin:trading_tradeproposal_changelist")

    def override_view(self, request, proposal_id: int):
        if not self.has_override_permission(request):
            raise PermissionDenied
        proposal = get_object_or_404(TradeProposal, pk=proposal_id)
        form = OverrideForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.proposal_override_set(
                    proposal=proposal,
                    actor=request.user,
                    cooldown=form.cleaned_data["override_cooldown"],
                    anti_flip=form.cleaned_data["override_anti_flip"],
                    price_drift=form.cleaned_data["override_price_drift"],
                    reason=form.cleaned_data["reason"],
                )
            except DomainError as error:
                self.message_user(request, f"{error.code}: {error.message}", messages.ERROR)
            else:
                self.log_change(request, proposal, f"Override: {form.cleaned_data['reason']}")
                self.message_user(request, f"Override recorded on proposal #{proposal.pk}.")
                return redirect("admin:trading_tradeproposal_change", proposal.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Override guards on proposal #{proposal.pk}",
            "proposal": proposal,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/trading/tradeproposal/override.html", context)

    # --- actions with a confirmation page ---

    def _confirm(self, request, queryset, *, action, title, form=None, preview=False):
        # Approve previews each proposal as if approved: what executing it next would meet.
        as_approved = action == "approve_selected"
        rows = []
        for proposal in queryset.select_related("user"):
            rows.append(
                {
                    "proposal": proposal,
                    "preflight": preflight_preview(proposal=proposal, as_approved=as_approved)
                    if preview
                    else None,
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "action": action,
            "rows": rows,
            "form": form,
            "queryset": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/trading/tradeproposal/confirm_action.html", context)

    def _each(self, request, queryset, service, done: str):
        ok, failed = 0, []
        for proposal in queryset:
            try:
                service(proposal)
                self.log_change(request, proposal, done.capitalize())
                ok += 1
            except DomainError as error:
                failed.append(f"#{proposal.pk}: {error.code}")
        if ok:
            self.message_user(request, f"{ok} proposal(s) {done}.")
        if failed:
            self.message_user(request, "Not done: " + "; ".join(failed), messages.ERROR)

    @admin.action(description="Approve selected proposals", permissions=["approve"])
    def approve_selected(self, request, queryset):
        if request.POST.get("post") != "yes":
            return self._confirm(
                request, queryset, action="approve_selected", title="Approve?", preview=True
            )
        self._each(
            request,
            queryset,
            lambda p: services.proposal_approve(proposal=p, actor=request.user),
            "approved",
        )
        return None

    @admin.action(description="Reject selected proposals", permissions=["approve"])
    def reject_selected(self, request, queryset):
        form = RejectForm(request.POST if request.POST.get("post") == "yes" else None)
        if not form.is_valid():
            return self._confirm(
                request, queryset, action="reject_selected", title="Reject?", form=form
            )
        reason = form.cleaned_data["reason"]
        self._each(
            request,
            queryset,
            lambda p: services.proposal_reject(proposal=p, actor=request.user, reason=reason),
            "rejected",
        )
        return None

    @admin.action(description="Execute selected proposals", permissions=["execute"])
    def execute_selected(self, request, queryset):
        if request.POST.get("post") != "yes":
            return self._confirm(
                request, queryset, action="execute_selected", title="Execute?", preview=True
            )
        queued, refused = 0, []
        for proposal in queryset:
            try:
                outcome = services.execution_request(proposal=proposal, actor=request.user)
                self.log_change(request, proposal, f"Execution #{outcome.execution.pk} requested")
                queued += 1
            except DomainError as error:
                codes = error.extra.get("failed_codes")
                why = ", ".join(codes) if codes else f"{error.code}: {error.message}"
                refused.append(f"#{proposal.pk}: {why}")
        if queued:
            self.message_user(request, f"{queued} execution(s) queued for the execute worker.")
        if refused:
            self.message_user(request, "Not executed: " + "; ".join(refused), messages.ERROR)
        return None


def _minutes(delta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


@admin.register(TradeExecution)
class TradeExecutionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "proposal_link",
        "market",
        "side",
        "amount_eur",
        "status",
        "partially_filled",
        "filled_eur",
        "exchange_status",
        "exchange_order_id",
        "error_code",
        "claimed_at",
    )
    list_filter = ("status", "partially_filled", "exchange_status", "error_code", "market")
    list_select_related = ("user",)
    search_fields = ("client_order_id", "exchange_order_id", "user__username")
    date_hierarchy = "claimed_at"

    @admin.display(description="proposal")
    def proposal_link(self, execution: TradeExecution):
        url = reverse("admin:trading_tradeproposal_change", args=[execution.proposal_id])
        return format_html('<a href="{}">#{}</a>', url, execution.proposal_id)


@admin.register(TradeHistory)
class TradeHistoryAdmin(ReadOnlyAdmin):
    list_display = (
        "executed_at",
        "user",
        "market",
        "side",
        "amount",
        "amount_eur",
        "price",
        "fee",
        "fee_currency",
        "fee_eur",
        "fill_id",
    )
    list_filter = ("market", "side")
    list_select_related = ("user",)
    date_hierarchy = "executed_at"


@admin.register(ProposalEvent)
class ProposalEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "proposal", "kind", "actor")
    list_filter = ("kind",)
    list_select_related = ("proposal", "actor")


@admin.register(AllocationChange)
class AllocationChangeAdmin(ReadOnlyAdmin):
    """Funding and withdrawals: every change of a user's allocation, who made it."""

    list_display = ("created_at", "user", "before_eur", "after_eur", "actor")
    list_select_related = ("user", "actor")
    date_hierarchy = "created_at"


@admin.register(AccountFunds)
class AccountFundsAdmin(ScaledAdmin):
    """Deposits less withdrawals of the shared account, per asset, recorded by staff: what
    oracle_report adds to every user's fills to expect the exchange's balances."""

    list_display = ("asset", "amount", "updated_by", "updated_at")
    list_select_related = ("updated_by",)
    fields = ("asset", "amount", "note", "updated_by", "updated_at")
    readonly_fields = ("updated_by", "updated_at")

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
