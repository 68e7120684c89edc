"""The site's error pages, and Django's own answered as the API's JSON error body under /api/ (an unknown path
there is a 404 an agent can parse, not an HTML page).

A refusal is an answer, not a fault: ``PermissionDeniedMiddleware`` turns ``PermissionDenied`` into the styled 403
and logs it as one line. Left to Django, it goes out through ``django.request`` with its traceback."""

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin
from django.views import defaults

from people.roles import GROUP_NAMES, Role, is_admin, is_approver, is_reviewer

logger = logging.getLogger(__name__)

APPROVERS_NAMED = 5


def not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        message = f"no API endpoint at {request.path}"
        return JsonResponse({"error": {"code": "not_found", "message": message, "field": None}}, status=404)
    return defaults.page_not_found(request, exception)


def _role_phrase(user: Any) -> str:
    if is_admin(user):
        return "an admin"
    if is_approver(user):
        return "an approver"
    if is_reviewer(user):
        return "a reviewer"
    return "someone without a role yet"


def _approver_names() -> list[str]:
    """A few people who hold the approver role, to name whom to ask."""
    users = get_user_model().objects.filter(is_active=True, groups__name=GROUP_NAMES[Role.APPROVER])
    return sorted(set(users.values_list("username", flat=True)[:APPROVERS_NAMED]))


def forbidden(request: HttpRequest, exception: Any = None) -> HttpResponse:
    """The 403 page: who you are signed in as, why the page refused you, and where to go instead."""
    reason = str(exception or "") if isinstance(exception, PermissionDenied) else ""
    if request.path.startswith("/api/"):
        message = reason or "you may not do this"
        return JsonResponse({"error": {"code": "forbidden", "message": message, "field": None}}, status=403)
    user = getattr(request, "user", None)
    context = {
        "reason": reason,
        "role_phrase": _role_phrase(user) if user is not None else "",
        "may_review": user is not None and is_reviewer(user),
        "approver_names": _approver_names(),
        "approver_page": request.path.startswith(("/proposals/", "/audit/", "/rollback/", "/lock/", "/watch/")),
    }
    return render(request, "403.html", context, status=403)


class PermissionDeniedMiddleware(MiddlewareMixin):
    """Answers ``PermissionDenied`` from a view with the 403 page, logged as one ``permission.denied`` line."""

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, PermissionDenied):
            return None
        user = getattr(request, "user", None)
        logger.info(
            "permission.denied",
            extra={
                "path": request.path,
                "user": user.get_username() if user is not None and user.is_authenticated else "",
                "reason": str(exc)[:300],
            },
        )
        response = forbidden(request, exc)
        # Django logs every 4xx response once more through ``django.request``; this one is logged above.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
