"""What the queue page reads on each request, and the CSRF token its forms carry."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.web.conftest import HX, log_pending, signed_in, stored

pytestmark = pytest.mark.django_db


def test_queue__a_page__reads_the_session_the_user_with_its_groups_and_the_list(
    reviewer: Any, agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three queries, none per item: the user comes with the names of its groups (people.backends); once warm the
    agents are this process's copy, and the reviewer's last answer (none) and the agents' stamp come from the
    shared cache in one round trip; the menu's count is this process's copy."""
    log_pending(agent.agent_id, 30, ago=timedelta(hours=3))
    client = signed_in(reviewer)
    client.get("/queue/")  # warm: the kept counts and agents, the reviewer's last answer
    reads: list[str] = []  # the calls made to the shared cache (a backend's get_many may call its own get)
    backend = caches["default"]
    for name in ("get", "get_many"):
        real = getattr(backend, name)

        def read(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reads.append(_name)
            depth = len(reads)
            try:
                return _real(*args, **kwargs)
            finally:
                del reads[depth:]

        monkeypatch.setattr(backend, name, read)

    with CaptureQueriesContext(connection) as captured:
        response = client.get("/queue/")

    assert response.status_code == 200 and response.content.count(b'<li class="item') == 25
    tables = [re.findall(r'FROM "?(\w+)"?', q["sql"])[-1] for q in captured.captured_queries]  # the outermost
    assert tables == ["django_session", "auth_user", "auditlog_decision"]
    assert reads == ["get_many"]


def test_queue__forms_carry_one_token__a_response_with_it_accepted_without_it_refused(
    reviewer: Any, agent: Any
) -> None:
    first, second = log_pending(agent.agent_id, 2)
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    html = client.get("/queue/").content.decode()

    tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html))
    tokens |= set(re.findall(r'"X-CSRFToken": "([^"]+)"', html))
    assert len(tokens) == 1  # the items', the bulk form's, the sign-out form's and htmx's header: one masked token
    (token,) = tokens

    refused = client.post("/queue/respond/", {"entry_id": first, "response": "approve"}, headers=HX)
    assert refused.status_code == 403 and stored(first).response_action is None

    accepted = client.post(
        "/queue/respond/", {"entry_id": first, "response": "approve", "csrfmiddlewaretoken": token}, headers=HX
    )
    assert accepted.status_code == 200 and stored(first).response_action == "approve"
    by_header = client.post(
        "/queue/respond/", {"entry_id": second, "response": "dismiss"}, headers={**HX, "X-CSRFToken": token}
    )
    assert by_header.status_code == 200 and stored(second).response_action == "dismiss"
