from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import observability
from config.dashboard import dashboard_view
from config.exceptions import api_not_found
from portfolio import apis as portfolio_apis
from portfolio.console import portfolio_ledger_view, portfolio_view
from trading import apis

api_v1 = [
    path("policy/", apis.PolicyApi.as_view(), name="policy"),
    path("proposals/", apis.ProposalListApi.as_view(), name="proposal-list"),
    path("proposals/<int:proposal_id>/", apis.ProposalDetailApi.as_view(), name="proposal-detail"),
    path(
        "proposals/<int:proposal_id>/approve/",
        apis.ProposalApproveApi.as_view(),
        name="proposal-approve",
    ),
    path(
        "proposals/<int:proposal_id>/reject/",
        apis.ProposalRejectApi.as_view(),
        name="proposal-reject",
    ),
    path(
        "proposals/<int:proposal_id>/execute/",
        apis.ProposalExecuteApi.as_view(),
        name="proposal-execute",
    ),
    path(
        "proposals/<int:proposal_id>/preflight/",
        apis.ProposalPreflightApi.as_view(),
        name="proposal-preflight",
    ),
    path("executions/", apis.ExecutionListApi.as_view(), name="execution-list"),
    path(
        "executions/<int:execution_id>/",
        apis.ExecutionDetailApi.as_view(),
        name="execution-detail",
    ),
    path("trading/status/", apis.TradingStatusApi.as_view(), name="trading-status"),
    path("scan-jobs/", apis.ScanJobListApi.as_view(), name="scan-job-list"),
    path("scan-jobs/<int:job_id>/", apis.ScanJobDetailApi.as_view(), name="scan-job-detail"),
    path("budget/", apis.BudgetApi.as_view(), name="budget"),
    path("notifications/", apis.NotificationSettingsApi.as_view(), name="notifications"),
    path(
        "notifications/secret/",
        apis.NotificationSecretRotateApi.as_view(),
        name="notification-secret",
    ),
    path(
        "notifications/deliveries/",
        apis.NotificationDeliveryListApi.as_view(),
        name="notification-delivery-list",
    ),
    path(
        "notifications/deliveries/<int:delivery_id>/",
        apis.NotificationDeliveryDetailApi.as_view(),
        name="notification-delivery-detail",
    ),
    path("positions/", portfolio_apis.PositionListApi.as_view(), name="position-list"),
    path("ledger.csv", portfolio_apis.LedgerCsvApi.as_view(), name="ledger-csv"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # Last: whatever matched nothing above is a JSON 404, not Django's HTML page.
    re_path(r"^(?P<path>.*)$", api_not_found, name="not-found"),
]

urlpatterns = [
    path("healthz", observability.healthz, name="healthz"),
    path("metrics", observability.metrics, name="metrics"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="admin-dashboard"),
    path("admin/portfolio/", admin.site.admin_view(portfolio_view), name="admin-portfolio"),
    path(
        "admin/portfolio/ledger.csv",
        admin.site.admin_view(portfolio_ledger_view),
        name="admin-portfolio-ledger",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
]
