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
from scheduler import selectors as scan_selectors
from scheduler import services as scan_services
from trading import notifications, selectors, services
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
    override_reason = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class PolicyApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PolicyPatchInput"

        trading_enabled = serializers.BooleanField(required=False)
        allowlist = serializers.ListField(
            child=serializers.RegexField(r"^[A-Z0-9]{1,10}-[A-Z0-9]{1,10}$"),
            required=False,
            max_length=100,
        )
        min_order_eur = serializers.DecimalField(
            max_digits=18, decimal_places=2, min_value=0, required=False
        )
        max_order_eur = serializers.DecimalField(
            max_digits=18, decimal_places=2, min_value=0, required=False
        )
        min_confidence = serializers.IntegerField(min_value=0, max_value=100, required=False)
        cooldown_minutes = serializers.IntegerField(min_value=0, max_value=525600, required=False)
        anti_flip_minutes = serializers.IntegerField(min_value=0, max_value=525600, required=False)
        max_daily_trades = serializers.IntegerField(min_value=0, max_value=10000, required=False)
        max_trades_per_hour = serializers.IntegerField(min_value=0, max_value=10000, required=False)
        gpt_daily_limit = serializers.IntegerField(min_value=0, max_value=100000, required=False)
        gpt_hourly_limit = serializers.IntegerField(min_value=0, max_value=10000, required=False)
        scan_interval_minutes = serializers.IntegerField(
            min_value=1, max_value=10080, required=False
        )
        proposal_ttl_minutes = serializers.IntegerField(
            min_value=1, max_value=10080, required=False
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Policy"

        trading_enabled = serializers.BooleanField()
        allowlist = serializers.ListField(child=serializers.CharField())
        min_order_eur = serializers.DecimalField(max_digits=18, decimal_places=2)
        max_order_eur = serializers.DecimalField(max_digits=18, decimal_places=2)
        min_confidence = serializers.IntegerField()
        cooldown_minutes = serializers.IntegerField()
        anti_flip_minutes = serializers.IntegerField()
        max_daily_trades = serializers.IntegerField()
        max_trades_per_hour = serializers.IntegerField()
        gpt_daily_limit = serializers.IntegerField()
        gpt_hourly_limit = serializers.IntegerField()
        scan_interval_minutes = serializers.IntegerField()
        proposal_ttl_minutes = serializers.IntegerField()
        policy_hash = serializers.SerializerMethodField()

        def get_policy_hash(self, policy: Policy) -> str:
            return policy.snapshot_and_hash()[1]

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        policy = selectors.policy_get_for_user(user=request.user)
        return Response(self.OutputSerializer(policy).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request):
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
        override_reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema(request=InputSerializer, responses={202: ExecutionOutputSerializer})
    def post(self, request, proposal_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        proposal = selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        if data["override_cooldown"] or data["override_anti_flip"]:
            if not request.user.has_perm("trading.override_guards"):
                raise PermissionMissing("Overrides need the override_guards permission.")
            services.proposal_override_set(
                proposal=proposal,
                actor=request.user,
                cooldown=data["override_cooldown"],
                anti_flip=data["override_anti_flip"],
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


class TradingStatusApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response(selectors.trading_status(user=request.user))


class ScanJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    markets = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    interval_minutes = serializers.IntegerField()
    next_run_at = serializers.DateTimeField()
    leased = serializers.SerializerMethodField()
    last_started_at = serializers.DateTimeField(allow_null=True)
    last_finished_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    consecutive_failures = serializers.IntegerField()

    def get_leased(self, job) -> bool:
        return job.lock_token is not None


class ScanJobListApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ScanJobCreateInput"

        markets = serializers.JSONField()
        interval_minutes = serializers.JSONField(required=False, default=15)

    @extend_schema(responses=ScanJobOutputSerializer(many=True))
    def get(self, request):
        jobs = scan_selectors.scan_job_list(user=request.user)
        return Response(ScanJobOutputSerializer(jobs, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ScanJobOutputSerializer})
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = scan_services.scan_job_create(user=request.user, **serializer.validated_data)
        return Response(ScanJobOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class ScanJobDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ScanJobPatchInput"

        markets = serializers.JSONField(required=False)
        interval_minutes = serializers.JSONField(required=False)
        enabled = serializers.BooleanField(required=False)

    @extend_schema(responses=ScanJobOutputSerializer)
    def get(self, request, job_id: int):
        job = scan_selectors.scan_job_get(user=request.user, job_id=job_id)
        return Response(ScanJobOutputSerializer(job).data)

    @extend_schema(request=InputSerializer, responses=ScanJobOutputSerializer)
    def patch(self, request, job_id: int):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = scan_selectors.scan_job_get(user=request.user, job_id=job_id)
        job = scan_services.scan_job_update(job=job, **serializer.validated_data)
        return Response(ScanJobOutputSerializer(job).data)


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


class NotificationSettingsApi(APIView):
    """The user's own notification settings; the secret signs their webhook deliveries."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "NotificationSettingsPatchInput"

        # Types and formats are checked by the service, with a stable code per field.
        webhook_url = serializers.JSONField(required=False)
        email = serializers.JSONField(required=False)
        events = serializers.JSONField(required=False)

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "NotificationSettings"

        webhook_url = serializers.CharField()
        webhook_secret = serializers.CharField()
        email = serializers.CharField()
        events = serializers.ListField(child=serializers.CharField())
        updated_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        row = notifications.notification_settings_get(user=request.user)
        return Response(self.OutputSerializer(row).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = notifications.notification_settings_update(
            user=request.user, **serializer.validated_data
        )
        return Response(self.OutputSerializer(row).data)


class NotificationSecretRotateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses=NotificationSettingsApi.OutputSerializer)
    def post(self, request):
        row = notifications.notification_secret_rotate(user=request.user)
        return Response(NotificationSettingsApi.OutputSerializer(row).data)


class NotificationDeliveryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    channel = serializers.CharField()
    destination = serializers.CharField()
    subject = serializers.CharField()
    payload = serializers.JSONField()
    status = serializers.CharField()
    attempt_count = serializers.IntegerField()
    attempts = serializers.JSONField()
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class NotificationDeliveryListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=NotificationDeliveryOutputSerializer(many=True))
    def get(self, request):
        deliveries = notifications.notification_delivery_list(user=request.user)[:500]
        return Response(NotificationDeliveryOutputSerializer(deliveries, many=True).data)


class NotificationDeliveryDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=NotificationDeliveryOutputSerializer)
    def get(self, request, delivery_id: int):
        delivery = notifications.notification_delivery_get(
            user=request.user, delivery_id=delivery_id
        )
        return Response(NotificationDeliveryOutputSerializer(delivery).data)
