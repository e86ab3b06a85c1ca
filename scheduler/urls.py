"""Scan-job API routes, under /api/v1/ (config/urls.py includes them)."""

from django.urls import path

from scheduler import apis

urlpatterns = [
    path("scan-jobs/", apis.ScanJobListApi.as_view(), name="scan-job-list"),
    path("scan-jobs/<int:job_id>/", apis.ScanJobDetailApi.as_view(), name="scan-job-detail"),
]
