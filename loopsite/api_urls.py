"""Every API route lives under /api/v1/, each app's in its own ``api_urls`` module; the schema, its docs and the
health check sit beside them."""

from typing import Any

from django.urls import include, path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from loopsite.health import healthz


class BearerKeyScheme(OpenApiAuthenticationExtension):
    """Shows the agent keys and personal tokens in the docs, so "Authorize" there sends them."""

    target_class = "people.authentication.BearerAuthentication"
    name = "bearerKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent key (lsa_...) or a personal token (lsu_...).",
        }


urlpatterns = [
    path("api/v1/", include("thresholds.api_urls")),
    path("api/v1/", include("auditlog.api_urls")),
    path("api/v1/", include("tuner.api_urls")),
    path("api/v1/", include("approvals.api_urls")),
    path("api/v1/", include("rollouts.api_urls")),
    # The schema and its docs are public: they describe the API, and every operation still needs a key.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from this URL (?script) instead of inline, as the
    # Content-Security-Policy asks; its inline <style> is moved out by templates/drf_spectacular/swagger_ui.html.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("healthz/", healthz),  # what people type too
]
