from django.urls import URLPattern, URLResolver, path

from thresholds import api, metrics_api

urlpatterns: list[URLPattern | URLResolver] = [
    path("config", api.OwnConfigApi.as_view(), name="api-own-config"),
    path("agents/<str:agent_id>/config", api.LiveConfigApi.as_view(), name="api-agent-config"),
    path("agents/<str:agent_id>/config/versions", api.ConfigVersionsApi.as_view(), name="api-agent-config-versions"),
    path(
        "agents/<str:agent_id>/metrics/weekly", metrics_api.WeeklyMetricsApi.as_view(), name="api-agent-metrics-weekly"
    ),
]
