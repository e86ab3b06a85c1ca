"""The notification API: a user's own settings, webhook secret and deliveries; the Telegram
link code and the bot's webhook."""

from __future__ import annotations

import hmac

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.scoping import SYSTEM, Scope, scope_enter
from notifications import selectors, services, telegram


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


class TelegramLinkApi(APIView):
    """A one-time code (10 minutes, once) to send to the bot as `/start <code>`."""

    permission_classes = [IsAuthenticated]

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TelegramLinkCode"

        code = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(request=None, responses={201: OutputSerializer})
    def post(self, request):
        link = telegram.telegram_link_code_create(user=request.user)
        return Response(self.OutputSerializer(link).data, status=status.HTTP_201_CREATED)


class TelegramWebhookApi(APIView):
    """Telegram's updates (setWebhook with secret_token): the secret in the path and in the
    X-Telegram-Bot-Api-Secret-Token header. Whose the update is comes from the linked chat."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(exclude=True)  # Telegram's, not a client's: its shape is the Bot API's Update
    def post(self, request, secret: str):
        expected = settings.TELEGRAM_WEBHOOK_SECRET
        if not (telegram.telegram_enabled() and expected):
            raise telegram.TelegramOff("The Telegram webhook is off.", http_status=404)
        if not hmac.compare_digest(secret.encode(), expected.encode()):
            raise NotFound()
        header = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(header.encode(), expected.encode()):
            raise telegram.TelegramSecretInvalid("The secret token header is missing or wrong.")
        # Which user the update is for is known only from its chat: found in the system
        # scope, then the handling narrows to that user (telegram.scope_narrow_to_user).
        scope_enter(Scope(SYSTEM))
        handled = telegram.telegram_update_handle(request.data)
        return Response({"handled": handled})
