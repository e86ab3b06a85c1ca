"""The portfolio: its console pages at the site's root, its API under /api/v1/
(`api_urlpatterns`)."""

from django.contrib import admin
from django.urls import path

from portfolio import apis
from portfolio.console import portfolio_ledger_view, portfolio_view

urlpatterns = [
    path("admin/portfolio/", admin.site.admin_view(portfolio_view), name="admin-portfolio"),
    path(
        "admin/portfolio/ledger.csv",
        admin.site.admin_view(portfolio_ledger_view),
        name="admin-portfolio-ledger",
    ),
]

api_urlpatterns = [
    path("positions/", apis.PositionListApi.as_view(), name="position-list"),
    path("ledger.csv", apis.LedgerCsvApi.as_view(), name="ledger-csv"),
]
