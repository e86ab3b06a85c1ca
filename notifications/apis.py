"""The notification API: a user's own settings, webhook secret and deliveries."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications import selectors, services


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
        row = selectors.notification_settings_get(user=request.user)
        return Response(self.OutputSerializer(row).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = services.notification_settings_update(user=request.user, **serializer.validated_data)
        return Response(self.OutputSerializer(row).data)


class NotificationSecretRotateApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses=NotificationSettingsApi.OutputSerializer)
    def post(self, request):
        row = services.notification_secret_rotate(user=request.user)
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
        deliveries = selectors.notification_delivery_list(user=request.user)[:500]
        return Response(NotificationDeliveryOutputSerializer(deliveries, many=True).data)


class NotificationDeliveryDetailApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=NotificationDeliveryOutputSerializer)
    def get(self, request, delivery_id: int):
        delivery = selectors.notification_delivery_get(user=request.user, delivery_id=delivery_id)
        return Response(NotificationDeliveryOutputSerializer(delivery).data)
