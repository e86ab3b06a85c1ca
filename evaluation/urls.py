"""The scorecard: its console page at the site's root, its API under /api/v1/
(`api_urlpatterns`)."""

from django.contrib import admin
from django.urls import path

from evaluation import apis
from evaluation.admin import scorecard_view

urlpatterns = [
    path("admin/scorecard/", admin.site.admin_view(scorecard_view), name="admin-scorecard"),
]

api_urlpatterns = [
    path("scorecard/", apis.ScorecardApi.as_view(), name="scorecard"),
]
