"""Trading's API routes, under /api/v1/ (config/urls.py includes them)."""

from django.urls import path

from trading import apis

urlpatterns = [
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
    path("budget/", apis.BudgetApi.as_view(), name="budget"),
]
