"""Positions and the ledger export: thin views over the portfolio selectors."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from portfolio.exports import ledger_response, ledger_year
from portfolio.formatting import portfolio_output
from portfolio.selectors import portfolio_get

EUR = {"allow_null": True, "help_text": "EUR, 2 decimals; null when it cannot be known."}


class ValuationErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class PositionOutputSerializer(serializers.Serializer):
    asset = serializers.CharField()
    market = serializers.CharField()
    quantity = serializers.CharField(help_text="At the market's quantity decimals.")
    average_cost_eur = serializers.CharField(allow_null=True, help_text="Null when none held.")
    cost_eur = serializers.CharField()
    price_eur = serializers.CharField(allow_null=True)
    value_eur = serializers.CharField(**EUR)
    unrealized_pnl_eur = serializers.CharField(**EUR)
    realized_pnl_eur = serializers.CharField()
    fees_eur = serializers.CharField()
    fills = serializers.IntegerField()
    unmatched_quantity = serializers.CharField(
        help_text="Sold beyond what the ledger shows was held (its cost is unknown)."
    )
    unmatched_proceeds_eur = serializers.CharField()
    flags = serializers.ListField(child=serializers.CharField())
    valuation_error = ValuationErrorSerializer(allow_null=True)


class UnpricedSerializer(serializers.Serializer):
    asset = serializers.CharField()
    code = serializers.CharField()


class TotalsOutputSerializer(serializers.Serializer):
    cost_eur = serializers.CharField()
    value_eur = serializers.CharField(**EUR)
    unrealized_pnl_eur = serializers.CharField(**EUR)
    realized_pnl_eur = serializers.CharField()
    fees_eur = serializers.CharField()
    unpriced = UnpricedSerializer(many=True)


class PortfolioOutputSerializer(serializers.Serializer):
    valued_at = serializers.DateTimeField()
    positions = PositionOutputSerializer(many=True)
    totals = TotalsOutputSerializer()


class PositionListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=PortfolioOutputSerializer)
    def get(self, request):
        portfolio = portfolio_get(user=request.user)
        return Response(PortfolioOutputSerializer(portfolio_output(portfolio)).data)


# --- the ledger as CSV ------------------------------------------------------------------------


class AnswerAsDocumented(BaseContentNegotiation):
    """The answer is the CSV, or an error in JSON, whatever Accept or ?format= ask for: the
    CSV is built whole by the view (its query runs inside the request's scope, never after)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class LedgerCsvApi(APIView):
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AnswerAsDocumented

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "year",
                OpenApiTypes.INT,
                description="Calendar year (UTC); the current one by default.",
                required=False,
            )
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        year = ledger_year(request.query_params.get("year"), default=timezone.now().year)
        return ledger_response(user=request.user, year=year)
