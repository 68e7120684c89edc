"""Reversed URLs, kept per process. ``reverse`` walks the URLconf each time (about 25 us on the development
machine), and the menu and the queue page reverse the same handful of routes on every request. A URL depends only on
the route's name, the URLconf and the script prefix, so those are the key: an overridden ``ROOT_URLCONF`` (tests) or
another prefix gets its own. A name with no route is kept as such, and raises as ``reverse`` does."""

from functools import lru_cache

from django.conf import settings
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse


@lru_cache(maxsize=512)
def _reversed(name: str, urlconf: str, prefix: str) -> tuple[str | None, str]:
    """(the URL, "") or, for a name the URLconf lacks, (None, why): a miss is kept too, as the menu asks for a
    route that may not exist (the first of its candidates) on every page, and a failed ``reverse`` costs more."""
    try:
        return reverse(name, urlconf=urlconf), ""
    except NoReverseMatch as exc:
        return None, str(exc)


def url_for(name: str) -> str:
    """``reverse(name)`` for a route without arguments; raises ``NoReverseMatch`` as it does."""
    url, why = _reversed(name, get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())
    if url is None:
        raise NoReverseMatch(why)
    return url
