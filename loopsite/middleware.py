"""The database is required: while it cannot be reached, answer 503 with ``Retry-After`` (JSON for the API)
instead of an HTML 500, so that clients back off and come back."""

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

UNAVAILABLE = (OperationalError, InterfaceError)


def unavailable_body(exc: BaseException) -> dict[str, Any]:
    return {
        "error": {
            "code": "unavailable",
            "message": f"the database cannot be reached; try again in {settings.DB_RETRY_AFTER} s",
            "field": None,
        }
    }


def unavailable_logged(exc: BaseException, path: str) -> None:
    logger.warning("database.unavailable", extra={"path": path, "error": f"{type(exc).__name__}: {exc}"[:300]})


class DatabaseUnavailableMiddleware:
    """Turns a database that cannot be reached (connection refused, pool timeout, statement timeout, a connection
    gone) into 503 + ``Retry-After`` for plain Django views; DRF views get the same from the API's exception
    handler (``loopsite.exception_handlers``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, UNAVAILABLE):
            return None
        unavailable_logged(exc, request.path)
        response: HttpResponse
        if request.path.startswith("/api/"):
            response = JsonResponse(unavailable_body(exc), status=503)
        else:
            response = HttpResponse(
                "loopsite cannot reach its database just now; try again in a moment.",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        response["Retry-After"] = str(settings.DB_RETRY_AFTER)
        return response
