"""Every API route lives under /api/v1/, each app's in its own ``api_urls`` module."""

from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("thresholds.api_urls")),
    path("api/v1/", include("auditlog.api_urls")),
    path("api/v1/", include("tuner.api_urls")),
    path("api/v1/", include("approvals.api_urls")),
]
