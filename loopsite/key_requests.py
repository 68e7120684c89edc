"""Requests made with a key skip the middleware that only serve a browser.

An agent logging one decision pays for every middleware in ``MIDDLEWARE`` on every request: sessions, CSRF,
authentication from the session, messages, htmx, django-axes' lockout and whitenoise's static files did about a
tenth of a single ``POST /api/v1/decisions``'s work, and none of them acts on a request that carries a bearer key
to the API. ``KeyRequestShortcut``, first in ``MIDDLEWARE``, hands such a request to a second chain of Django's
handler built from the same list without ``BROWSER_ONLY_MIDDLEWARE`` (``loopsite/settings.py``); every other request
goes down the whole list. Everything else in the list, in its order, serves both: the database's 503, the security
headers, the CSP, the refusal of unstorable text, the Content-Length, the clickjacking header and the 403 page.

Nothing in the skipped middleware decides an API request with a key:

- DRF authenticates a bearer key first (``people.authentication.BearerAuthentication``): the key answers or the
  request is refused with 401, so the session, the user it names and its CSRF check are never consulted;
- django-axes counts failed sign-ins to the site's forms, never an API key (those have their own throttle);
- messages and htmx serve pages; whitenoise serves ``/static/``.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse

from people.authentication import bearer_key

API_PREFIX = "/api/"


def is_key_request(request: HttpRequest) -> bool:
    """A request to the API that carries a bearer key (an agent's key or a personal token)."""
    return (
        request.path_info.startswith(API_PREFIX) and bearer_key(request.META.get("HTTP_AUTHORIZATION", "")) is not None
    )


def key_request_middleware() -> list[str]:
    """The middleware a key request goes through: ``MIDDLEWARE`` after this shortcut, less the browser's own."""
    skipped = set(settings.BROWSER_ONLY_MIDDLEWARE)
    unknown = skipped - set(settings.MIDDLEWARE)
    if unknown:
        raise ValueError(f"BROWSER_ONLY_MIDDLEWARE names middleware that MIDDLEWARE does not: {sorted(unknown)}")
    own = f"{__name__}.{KeyRequestShortcut.__name__}"
    return [path for path in settings.MIDDLEWARE if path != own and path not in skipped]


class _KeyRequestChain(BaseHandler):
    """Django's own handler, its chain built from ``key_request_middleware()`` rather than ``MIDDLEWARE``."""

    _middleware_chain: Callable[[HttpRequest], HttpResponse]  # set by ``load_middleware``

    def __init__(self) -> None:
        # ``load_middleware`` reads settings.MIDDLEWARE: it sees the shorter list while it builds, at start-up
        # (Django builds the outer chain, and with it this one, before it serves a request).
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = key_request_middleware()
        try:
            self.load_middleware()
        finally:
            settings.MIDDLEWARE = full


class KeyRequestShortcut:
    """First in ``MIDDLEWARE``: a key request goes down the shorter chain, any other request down the whole list."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.key_chain = _KeyRequestChain()._middleware_chain

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_key_request(request):
            return self.key_chain(request)
        return self.get_response(request)
