from django.urls import URLPattern, URLResolver, path

from auditlog import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("decisions", api.DecisionListCreateApi.as_view(), name="api-decisions"),
    path("decisions/batch", api.DecisionBatchApi.as_view(), name="api-decisions-batch"),
    path("decisions/<str:entry_id>", api.DecisionDetailApi.as_view(), name="api-decision"),
    path("decisions/<str:entry_id>/response", api.DecisionResponseApi.as_view(), name="api-decision-response"),
    path("agents/<str:agent_id>/evaluation-set.<str:fmt>", api.EvaluationSetApi.as_view(), name="api-evaluation-set"),
]
