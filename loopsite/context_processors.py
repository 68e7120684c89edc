"""Template context shared by every page: the navigation, built from the routes that exist."""

from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from people.roles import is_staff

# (URL names to try in order, label, staff only). A page appears in the nav once its route is in the URLconf.
NAV_ITEMS: tuple[tuple[tuple[str, ...], str, bool], ...] = (
    (("queue",), "Queue", False),
    (("proposal-list",), "Proposals", False),
    (("audit-trail",), "Audit trail", False),
    (("dashboard",), "Dashboard", False),
    (("admin:index",), "Admin", True),
    (("swagger-ui", "api-docs"), "API docs", False),
)


def _first_url(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return None


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_links": []}
    links = []
    for names, label, staff_only in NAV_ITEMS:
        if staff_only and not is_staff(user):
            continue
        url = _first_url(names)
        if url is not None:
            links.append({"label": label, "url": url, "active": request.path.startswith(url)})
    return {"nav_links": links}
