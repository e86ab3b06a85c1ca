"""The user's status across the apps: every trading guard, the LLM budget left and the
last finished scan. It sits here, above trading and scheduler, because it reads both."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduler.selectors import scan_last_finished
from trading.selectors import trading_status


class TradingStatusApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        status = trading_status(user=request.user)
        return Response({**status, "last_scan": scan_last_finished(user=request.user)})
