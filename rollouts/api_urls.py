from django.urls import URLPattern, URLResolver, path

from rollouts import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("canaries/<str:canary_id>", api.CanaryDetailApi.as_view(), name="api-canary-detail"),
    path("canaries/<str:canary_id>/promote", api.CanaryPromoteApi.as_view(), name="api-canary-promote"),
    path("canaries/<str:canary_id>/abort", api.CanaryAbortApi.as_view(), name="api-canary-abort"),
]
