from django.urls import URLPattern, URLResolver, path

from approvals import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("agents/<str:agent_id>/proposals", api.ProposalListApi.as_view(), name="api-proposal-list"),
    path("agents/<str:agent_id>/lock", api.AgentLockApi.as_view(), name="api-agent-lock"),
    path("agents/<str:agent_id>/unlock", api.AgentUnlockApi.as_view(), name="api-agent-unlock"),
    path("proposals/<str:proposal_id>", api.ProposalDetailApi.as_view(), name="api-proposal-detail"),
    path("proposals/<str:proposal_id>/decision", api.ProposalDecisionApi.as_view(), name="api-proposal-decision"),
    path("proposals/<str:proposal_id>/comments", api.ProposalCommentsApi.as_view(), name="api-proposal-comments"),
    path("audit", api.AuditTrailApi.as_view(), name="api-audit-trail"),
]
