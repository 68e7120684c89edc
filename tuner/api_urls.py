from django.urls import URLPattern, URLResolver, path

from tuner import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("agents/<str:agent_id>/tuner-runs", api.TunerRunsApi.as_view(), name="api-tuner-runs"),
]
