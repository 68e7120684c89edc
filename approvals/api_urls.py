from django.urls import URLPattern, URLResolver, path

from approvals import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("agents/<str:agent_id>/proposals", api.ProposalListApi.as_view(), name="api-proposal-list"),
    path("proposals/<int:proposal_id>", api.ProposalDetailApi.as_view(), name="api-proposal-detail"),
    path("proposals/<int:proposal_id>/decision", api.ProposalDecisionApi.as_view(), name="api-proposal-decision"),
    path("audit", api.AuditTrailApi.as_view(), name="api-audit-trail"),
]
