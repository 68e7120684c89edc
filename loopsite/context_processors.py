"""Template context shared by every page: the navigation, built from the routes that exist, with what waits."""

import time
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest
from django.urls import NoReverseMatch

from approvals.pending import proposals_pending_for
from auditlog.selectors import queue_pending_count
from loopsite.kept import keep
from loopsite.links import url_for
from people.roles import is_approver, is_reviewer, is_staff

# The menu's figures are read on every page: kept this long in the shared cache rather than counted each time, and
# each process keeps what it read for NAV_LOCAL_SECONDS more rather than asking the cache on every page (a round
# trip a page). A badge may then lag by 20 seconds at most.
NAV_COUNT_SECONDS = 15
NAV_LOCAL_SECONDS = 5
_kept: dict[str, tuple[float, int]] = {}  # cache key -> (monotonic time it expires, count)

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
            return url_for(name)
        except NoReverseMatch:
            continue
    return None


def _kept_count(key: str, count: Callable[[], int]) -> int:
    """The figure under ``key``: this process's copy, else the shared cache's, else ``count()`` kept in both."""
    now = time.monotonic()
    kept = _kept.get(key)
    if kept is not None and kept[0] > now:
        return kept[1]
    cached = cache.get(key)
    if cached is None:
        cached = count()
        cache.set(key, cached, timeout=NAV_COUNT_SECONDS)
    keep(_kept, key, (now + NAV_LOCAL_SECONDS, int(cached)), limit=10_000)  # one key per approver
    return int(cached)


def nav_counts_forget() -> None:
    """Drop this process's copies of the figures (tests, which clear the shared cache between them)."""
    _kept.clear()


def _queue_count(user: Any) -> int:
    return _kept_count("nav-queue-pending", queue_pending_count)


def _proposal_count(user: Any) -> int:
    return _kept_count(f"nav-proposals-pending:{user.pk}", lambda: proposals_pending_for(user=user).count())


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
