"""One place where domain errors become HTTP responses: ``{"error": {"code", "message", "field"}}``."""

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from loopsite.exceptions import DomainError
from loopsite.middleware import UNAVAILABLE, unavailable_body, unavailable_logged


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, UNAVAILABLE):
        request = context.get("request")
        unavailable_logged(exc, getattr(request, "path", ""))
        return Response(unavailable_body(exc), status=503, headers={"Retry-After": str(settings.DB_RETRY_AFTER)})
    if isinstance(exc, DomainError):
        return Response(
            {"error": {"code": exc.code, "message": exc.message, "field": exc.field}}, status=exc.status_code
        )
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        detail = exc.detail
        field = None
        if isinstance(detail, dict) and detail:
            field = next(iter(detail))
            first = detail[field]
            message = f"{field}: {first[0] if isinstance(first, list) else first}"
        elif isinstance(detail, list) and detail:
            message = str(detail[0])
        else:
            message = str(detail)
        response.data = {"error": {"code": getattr(exc, "default_code", "error"), "message": message, "field": field}}
    return response
