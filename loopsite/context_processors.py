"""Template context shared by every page: the navigation, built from the routes that exist."""

from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from people.roles import is_staff

# (URL name, label, staff only). A page appears in the nav once its route is in the URLconf.
NAV_ITEMS: tuple[tuple[str, str, bool], ...] = (
    ("queue", "Queue", False),
    ("proposal-list", "Proposals", False),
    ("audit-trail", "Audit trail", False),
    ("dashboard", "Dashboard", False),
    ("admin:index", "Admin", True),
    ("swagger-ui", "API docs", False),
)


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_links": []}
    links = []
    for name, label, staff_only in NAV_ITEMS:
        if staff_only and not is_staff(user):
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        links.append({"name": name, "label": label, "url": url, "active": request.path.startswith(url)})
    return {"nav_links": links}
