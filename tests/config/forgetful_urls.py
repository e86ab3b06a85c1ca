"""The product's URLs plus two views that forget to scope their query, for the isolation
tests: one through the ORM (the Django guard must refuse it), one in raw SQL (row-level
security must still show only the signed-in user's rows)."""

from django.db import connection
from django.http import JsonResponse
from django.urls import include, path

from trading.models import TradeProposal


def proposals_orm(request):
    return JsonResponse({"ids": [p.pk for p in TradeProposal.objects.order_by("pk")]})


def proposals_raw(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM trade_proposals ORDER BY id")
        return JsonResponse({"ids": [row[0] for row in cursor.fetchall()]})


urlpatterns = [
    path("forgetful/orm/", proposals_orm),
    path("forgetful/raw/", proposals_raw),
    path("", include("config.urls")),
]
