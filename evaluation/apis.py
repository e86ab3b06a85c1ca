"""The scorecard over the API: the requesting user's own proposals only."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluation.models import HORIZONS_HOURS
from evaluation.selectors import scorecard_get
from trading.validators import CONFIDENCE_LEVELS


class ScorecardStatsSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    hits = serializers.IntegerField()
    hit_rate = serializers.DecimalField(max_digits=6, decimal_places=4, allow_null=True)
    mean_net_return = serializers.DecimalField(max_digits=24, decimal_places=6, allow_null=True)
    brier = serializers.DecimalField(max_digits=6, decimal_places=4, allow_null=True)


class ScorecardConfidenceSerializer(ScorecardStatsSerializer):
    confidence = serializers.ChoiceField(choices=CONFIDENCE_LEVELS)


class ScorecardMarketSerializer(ScorecardStatsSerializer):
    market = serializers.CharField()


class ScorecardAdvisorSerializer(ScorecardStatsSerializer):
    advisor = serializers.CharField()
    model = serializers.CharField(allow_blank=True)


class ScorecardBaselineSerializer(ScorecardStatsSerializer):
    name = serializers.ChoiceField(choices=["no_trade", "buy_and_hold_btc_eur", "offline_shadow"])


class ScorecardHumanSerializer(serializers.Serializer):
    approved = ScorecardStatsSerializer()
    rejected = ScorecardStatsSerializer()
    undecided = ScorecardStatsSerializer()
    approved_minus_rejected = serializers.DecimalField(
        max_digits=24, decimal_places=6, allow_null=True
    )


class ScorecardSerializer(serializers.Serializer):
    horizon_hours = serializers.IntegerField()
    overall = ScorecardStatsSerializer()
    by_confidence = ScorecardConfidenceSerializer(many=True)
    by_market = ScorecardMarketSerializer(many=True)
    by_advisor = ScorecardAdvisorSerializer(many=True)
    human = ScorecardHumanSerializer()
    baselines = ScorecardBaselineSerializer(many=True)


class ScorecardApi(APIView):
    permission_classes = [IsAuthenticated]

    class FilterSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ScorecardFilter"

        horizon = serializers.ChoiceField(choices=HORIZONS_HOURS, default=24)

    @extend_schema(parameters=[FilterSerializer], responses=ScorecardSerializer)
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        card = scorecard_get(user=request.user, horizon_hours=filters.validated_data["horizon"])
        return Response(ScorecardSerializer(card).data)
