"""The integration API: thin views that parse input, call one service or selector, render.

Every read and write goes through a selector or service that takes the requesting user, so
another user's object is a 404 in every endpoint.
"""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from budget.selectors import budget_usage_summary
from trading import selectors, services
from trading.errors import PermissionMissing
from trading.models import Policy, Side, TradeProposal
from trading.preflight import preflight_preview
from trading.validators import CONFIDENCE_LEVELS


class ExecutionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    proposal_id = serializers.IntegerField()
    status = serializers.CharField()
    client_order_id = serializers.UUIDField()
    market = serializers.CharField()
    side = serializers.CharField()
    amount_eur = serializers.DecimalField(max_digits=18, decimal_places=2)
    exchange_order_id = serializers.CharField()
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    preflight_result = serializers.JSONField()
    policy_hash = serializers.CharField()
    claimed_at = serializers.DateTimeField()
    submitting_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    # The final order at the exchange (empty/null until it is final).
    exchange_status = serializers.CharField()
    filled_amount = serializers.DecimalField(max_digits=30, decimal_places=12, allow_null=True)
    filled_eur = serializers.DecimalField(max_digits=24, decimal_places=8, allow_null=True)
    fee_eur = serializers.DecimalField(max_digits=24, decimal_places=8, allow_null=True)
    average_price = serializers.DecimalField(max_digits=30, decimal_places=12, allow_null=True)
    partially_filled = serializers.BooleanField()


class ProposalOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    market = serializers.CharField()
    side = serializers.CharField()
    amount_eur = serializers.DecimalField(max_digits=18, decimal_places=2)
    confidence = serializers.IntegerField()
    rationale = serializers.CharField()
    status = serializers.CharField()
    source = serializers.CharField()
    expires_at = serializers.DateTimeField()
    policy_hash = serializers.CharField()
    override_cooldown = serializers.BooleanField()
    override_anti_flip = serializers.BooleanField()
    override_price_drift = serializers.BooleanField()
    override_reason = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_reason = serializers.CharField()
    partially_executed = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class PolicyApi(APIView):
    permission_classes = [IsAuthenticated]

    # The fields, their types and bounds come from the model (Policy.SNAPSHOT_FIELDS); each
    # is optional in a PATCH. Cross-field rules are the service's (the model's constraints).
    class InputSerializer(serializers.ModelSerializer):
        allowlist = serializers.ListField(
            child=serializers.RegexField(r"^[A-Z0-9]{1,10}-[A-Z0-9]{1,10}$"),
            required=False,
            max_length=100,
        )

        class Meta:
            model = Policy
            fields = tuple(f for f in Policy.SNAPSHOT_FIELDS if f not in Policy.STAFF_FIELDS)
            ref_name = "PolicyPatchInput"

    class OutputSerializer(serializers.ModelSerializer):
        allowlist = serializers.ListField(child=serializers.CharField())
        policy_hash = serializers.SerializerMethodField()

        class Meta:
            model = Policy
            fields = (*Policy.SNAPSHOT_FIELDS, "policy_hash")
            read_only_fields = fields
            ref_name = "Policy"

        def get_policy_hash(self, policy: Policy) -> str:
            return policy.snapshot_and_hash()[1]

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        policy = selectors.policy_get_for_user(user=request.user)
        return Response(self.OutputSerializer(policy).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request):
        staff_only = sorted(set(Policy.STAFF_FIELDS) & set(getattr(request.data, "keys", list)()))
        if staff_only:
            # A user's share of the shared account is set by staff (funding), never by the user.
            raise PermissionMissing(
                f"{', '.join(staff_only)}: only staff change this, in the console.",
                code="POLICY_FIELD_STAFF_ONLY",
                extra={"fields": staff_only},
            )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        policy = services.policy_update(user=request.user, changes=serializer.validated_data)
        return Response(self.OutputSerializer(policy).data)


class ProposalListApi(APIView):
    permission_classes = [IsAuthenticated]

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=TradeProposal.Status.values, required=False)
        market = serializers.CharField(max_length=21, required=False)

    class InputSerializer(serializers.Serializer):
        # Types are checked by the service, which is also what guards LLM output.
        market = serializers.JSONField()
        side = serializers.JSONField()
        amount_eur = serializers.JSONField()
        confidence = serializers.JSONField()
        rationale = serializers.JSONField(required=False, default="")

    @extend_schema(parameters=[FilterSerializer], responses=ProposalOutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        proposals = selectors.proposal_list(user=request.user, **filters.validated_data)[:500]
        return Response(ProposalOutputSerializer(proposals, many=True).data)

    class DocumentedInputSerializer(serializers.Serializer):
        """What the service accepts, for the schema; the service itself checks the input."""

        class Meta:
            ref_name = "ProposalCreateInput"

        market = serializers.RegexField(r"^[A-Z0-9]{1,10}-[A-Z0-9]{1,10}$")
        side = serializers.ChoiceField(choices=Side.values)
        amount_eur = serializers.DecimalField(
            max_digits=9, decimal_places=2, min_value=Decimal("0.01")
        )
        confidence = serializers.ChoiceField(choices=CONFIDENCE_LEVELS)
        rationale = serializers.CharField(max_length=4000, required=False, allow_blank=True)

    @extend_schema(request=DocumentedInputSerializer, responses={201: ProposalOutputSerializer})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        proposal = services.proposal_create(
            user=request.user,
            source=TradeProposal.Source.API,
            actor=request.user,
            **serializer.validated_data,
        )
        return Response(ProposalOutputSerializer(proposal).data, status=status.HTTP_201_CREATED)


class ProposalDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ProposalOutputSerializer)
    def get(self, request, proposal_id: int):
        proposal = selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        return Response(ProposalOutputSerializer(proposal).data)


class ProposalApproveApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses=ProposalOutputSerializer)
    def post(self, request, proposal_id: int):
        proposal = selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        proposal = services.proposal_approve(proposal=proposal, actor=request.user)
        return Response(ProposalOutputSerializer(proposal).data)


class ProposalRejectApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ProposalRejectInput"

        reason = serializers.CharField(max_length=2000)

    @extend_schema(request=InputSerializer, responses=ProposalOutputSerializer)
    def post(self, request, proposal_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        proposal = selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        proposal = services.proposal_reject(
            proposal=proposal, actor=request.user, reason=serializer.validated_data["reason"]
        )
        return Response(ProposalOutputSerializer(proposal).data)


class ProposalPreflightApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, proposal_id: int):
        proposal = selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        return Response(preflight_preview(proposal=proposal).as_dict())


class ProposalExecuteApi(APIView):
    """Claims the execution here (preflight under the user's lock) and leaves the sending to
    the execute worker, the only process with the trade key."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ProposalExecuteInput"

        override_cooldown = serializers.BooleanField(required=False, default=False)
        override_anti_flip = serializers.BooleanField(required=False, default=False)
        override_price_drift = serializers.BooleanField(required=False, default=False)
        override_reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema(request=InputSerializer, responses={202: ExecutionOutputSerializer})
    def post(self, request, proposal_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        proposal = selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        if data["override_cooldown"] or data["override_anti_flip"] or data["override_price_drift"]:
            if not request.user.has_perm("trading.override_guards"):
                raise PermissionMissing("Overrides need the override_guards permission.")
            services.proposal_override_set(
                proposal=proposal,
                actor=request.user,
                cooldown=data["override_cooldown"],
                anti_flip=data["override_anti_flip"],
                price_drift=data["override_price_drift"],
                reason=data.get("override_reason", ""),
            )
        outcome = services.execution_request(proposal=proposal, actor=request.user)
        body = ExecutionOutputSerializer(outcome.execution).data
        return Response(body, status=status.HTTP_202_ACCEPTED if outcome.created else 200)


class ExecutionListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ExecutionOutputSerializer(many=True))
    def get(self, request):
        executions = selectors.execution_list(user=request.user)[:500]
        return Response(ExecutionOutputSerializer(executions, many=True).data)


class ExecutionDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=ExecutionOutputSerializer)
    def get(self, request, execution_id: int):
        execution = selectors.execution_get(user=request.user, execution_id=execution_id)
        return Response(ExecutionOutputSerializer(execution).data)


class BudgetApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        policy = selectors.policy_get_for_user(user=request.user)
        return Response(
            budget_usage_summary(
                user_id=request.user.pk,
                daily_limit=policy.gpt_daily_limit,
                hourly_limit=policy.gpt_hourly_limit,
            )
        )
