"""The test live server: on a shared in-memory SQLite connection its requests must not overlap (tests/conftest.py)."""

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.signals import request_finished, request_started

from tests.conftest import OneRequestAtATime, ServerRequests, live_server_shares_a_connection

pytestmark = pytest.mark.django_db(transaction=True)


def test_live_server__eight_clients_at_once__requests_overlap_only_on_their_own_connections(live_server: Any) -> None:
    overlap = ServerRequests()
    request_started.connect(overlap.started)
    request_finished.connect(overlap.finished)
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda _: urllib.request.urlopen(f"{live_server.url}/healthz", timeout=30).status, range(160))
            )
    finally:
        request_started.disconnect(overlap.started)
        request_finished.disconnect(overlap.finished)
    assert statuses == [200] * 160
    shared = live_server_shares_a_connection()
    assert isinstance(live_server.thread.httpd.get_app(), OneRequestAtATime) is shared
    if shared:
        assert overlap.most == 1, f"{overlap.most} requests at once on one shared SQLite connection"
