"""The scan-job API: a user's own scan jobs, listed, created and changed."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduler import selectors as scan_selectors
from scheduler import services as scan_services


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
