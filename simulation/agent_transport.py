"""The agent client's transport inside the simulation: its requests answered in-process by the API's own views.

The reference agent logs through ``loopsite_client.Client`` like any agent. Instead of HTTP, this transport builds a
Django request for each of the client's requests and hands it to the view that serves that route, so the key is
checked, the body parsed and refused, and the answer rendered exactly as over the wire. The one difference is the
time: the batch view checks and stores the entries at the simulated ``now`` (``DecisionBatchApi.clock``); the
config view does not depend on the time.

Two things are left out, both per request and both meaningless for an agent living on a simulated clock: the
throttles (they count wall-clock windows) and the key's database lookup after the first request (the key is checked
once, by the API's own authentication, and its principal kept for the run).

Calls run on the caller's thread (the client is made with ``background=False`` and ``poll_interval=None``), so
they use the simulation's database connection and transaction.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.test import RequestFactory
from loopsite_client import Response
from rest_framework.authentication import get_authorization_header

from auditlog.api import DecisionBatchApi
from people.authentication import BearerAuthentication
from thresholds.api import OwnConfigApi

CONFIG_PATH = "/api/v1/config"
BATCH_PATH = "/api/v1/decisions/batch"


def _bearer_checked_once() -> type[BearerAuthentication]:
    """``BearerAuthentication`` that checks each key once and then gives the principal it found (a class per
    transport: DRF makes a new authenticator for every request)."""
    known: dict[bytes, tuple[Any, Any]] = {}

    class BearerCheckedOnce(BearerAuthentication):
        def authenticate(self, request: Any) -> tuple[Any, Any] | None:
            header = get_authorization_header(request)
            found = known.get(header)
            if found is None:
                checked = super().authenticate(request)
                if checked is None:
                    return None
                found = known[header] = checked
            return found

    return BearerCheckedOnce


class InProcessTransport:
    """``loopsite_client.Transport`` answering ``GET /api/v1/config`` and ``POST /api/v1/decisions/batch`` with the
    real views, at the time ``clock()`` says."""

    def __init__(self, *, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.requests = 0
        self._factory = RequestFactory()
        # No rate limit: the API's throttles count requests per wall-clock window, which says nothing about an
        # agent whose hours pass in milliseconds (and counting them costs cache writes on every request).
        options: dict[str, Any] = {"throttle_classes": (), "authentication_classes": (_bearer_checked_once(),)}
        self._views: dict[tuple[str, str], Callable[..., Any]] = {
            ("GET", CONFIG_PATH): OwnConfigApi.as_view(**options),
            ("POST", BATCH_PATH): DecisionBatchApi.as_view(clock=clock, **options),
        }

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        self.requests += 1
        view = self._views.get((method, path))
        if view is None:
            return Response(404, {"content-type": "application/json"}, b'{"error":{"code":"not_found"}}')
        sent = dict(headers or {})
        content_type = sent.pop("Content-Type", "")
        request = self._factory.generic(method, path, data=body or b"", content_type=content_type, headers=sent)
        response = view(request)
        if hasattr(response, "render"):
            response.render()
        return Response(response.status_code, {k.lower(): v for k, v in response.items()}, response.content)
