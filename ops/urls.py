"""Operations' routes: health, metrics and the admin dashboard at the site's root, and the
status API under /api/v1/ (`api_urlpatterns`)."""

from django.contrib import admin
from django.urls import path

from ops import apis, observability
from ops.dashboard import dashboard_view

urlpatterns = [
    path("healthz", observability.healthz, name="healthz"),
    path("metrics", observability.metrics, name="metrics"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="admin-dashboard"),
]

api_urlpatterns = [
    path("trading/status/", apis.TradingStatusApi.as_view(), name="trading-status"),
]
