"""Django's own error pages, answered as the API's JSON error body under /api/ (an unknown path there is a 404 an
agent can parse, not an HTML page)."""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults


def not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        message = f"no API endpoint at {request.path}"
        return JsonResponse({"error": {"code": "not_found", "message": message, "field": None}}, status=404)
    return defaults.page_not_found(request, exception)
