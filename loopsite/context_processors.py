"""Template context shared by every page: the navigation, built from the routes that exist, with what waits."""

from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from approvals.pending import proposals_pending_for
from auditlog.selectors import queue_pending_count
from people.roles import is_approver, is_reviewer, is_staff

# The menu's figures are read on every page: kept this long rather than counted each time.
NAV_COUNT_SECONDS = 15

Check = Callable[[Any], bool]


def _anyone(user: Any) -> bool:
    return True


def _reviewers(user: Any) -> bool:
    return is_reviewer(user) or is_staff(user)


def _approvers(user: Any) -> bool:
    return is_approver(user) or is_staff(user)


# (URL names to try in order, label, who sees the link). A page appears in the nav once its route is in the
# URLconf, and only for those who may open it.
NAV_ITEMS: tuple[tuple[tuple[str, ...], str, Check], ...] = (
    (("queue",), "Queue", _reviewers),
    (("proposal-list",), "Proposals", _approvers),
    (("audit-trail",), "Audit trail", _approvers),
    (("dashboard",), "Dashboard", _reviewers),
    (("admin:index",), "Admin", is_staff),
    (("swagger-ui", "api-docs"), "API docs", _anyone),
)


def _first_url(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return None


def _queue_count(user: Any) -> int:
    cached = cache.get("nav-queue-pending")
    if cached is None:
        cached = queue_pending_count()
        cache.set("nav-queue-pending", cached, timeout=NAV_COUNT_SECONDS)
    return int(cached)


def _proposal_count(user: Any) -> int:
    key = f"nav-proposals-pending:{user.pk}"
    cached = cache.get(key)
    if cached is None:
        cached = proposals_pending_for(user=user).count()
        cache.set(key, cached, timeout=NAV_COUNT_SECONDS)
    return int(cached)


# What a link's badge counts: queue items pending review, proposals this user may decide.
NAV_COUNTS: dict[str, Callable[[Any], int]] = {"Queue": _queue_count, "Proposals": _proposal_count}


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_links": []}
    links = []
    for names, label, may_see in NAV_ITEMS:
        if not may_see(user):
            continue
        url = _first_url(names)
        if url is not None:
            counter = NAV_COUNTS.get(label)
            count = counter(user) if counter is not None else None
            links.append({"label": label, "url": url, "active": request.path.startswith(url), "count": count})
    return {"nav_links": links}
