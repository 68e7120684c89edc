"""A request to the API with a bearer key skips the middleware that only serve a browser
(``loopsite/key_requests.py``), and gets the same answer as before: status, body and headers."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import pytest
from axes.middleware import AxesMiddleware
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.test import override_settings
from django_htmx.middleware import HtmxMiddleware
from rest_framework.test import APIClient
from whitenoise.middleware import WhiteNoiseMiddleware

from loopsite.key_requests import key_request_middleware
from tests.factories import entry

DECISIONS = "/api/v1/decisions"

# Each browser-only middleware, by the method every request it handles goes through.
BROWSER_ONLY = {
    SessionMiddleware: "process_request",
    AuthenticationMiddleware: "process_request",
    CsrfViewMiddleware: "process_request",
    MessageMiddleware: "process_request",
    HtmxMiddleware: "__call__",
    AxesMiddleware: "__call__",
    WhiteNoiseMiddleware: "__call__",
}


@contextmanager
def browser_only_calls() -> Iterator[dict[str, int]]:
    """Counts the calls of each browser-only middleware while the block runs, letting each call through."""
    calls = dict.fromkeys((cls.__name__ for cls in BROWSER_ONLY), 0)
    with ExitStack() as stack:
        for cls, method in BROWSER_ONLY.items():
            original = getattr(cls, method)

            def counted(self: Any, *args: Any, _original: Any = original, _name: str = cls.__name__) -> Any:
                calls[_name] += 1
                return _original(self, *args)

            stack.enter_context(mock.patch.object(cls, method, counted))
        yield calls


def test_browser_only_middleware__as_settings_list_them():
    assert sorted(f"{cls.__module__}.{cls.__name__}" for cls in BROWSER_ONLY) == sorted(
        settings.BROWSER_ONLY_MIDDLEWARE
    )


@pytest.mark.django_db
def test_agent_post__skips_the_browser_middleware__a_page_request_does_not(agent_client):
    with browser_only_calls() as calls:
        response = agent_client.post(DECISIONS, entry(id="d-1"), format="json")
    assert response.status_code == 201, response.content
    assert calls == dict.fromkeys(calls, 0)

    with browser_only_calls() as calls:
        assert APIClient().get("/healthz").status_code == 200
    assert calls == dict.fromkeys(calls, 1)


@pytest.mark.django_db
def test_key_request__lower_case_scheme__skips_them_too(agent_and_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {agent_and_key[1]}")
    with browser_only_calls() as calls:
        assert client.get(DECISIONS).status_code == 200
    assert calls == dict.fromkeys(calls, 0)


@pytest.mark.django_db
def test_agent_post__answers_with_every_header_a_page_gets(agent_client):
    response = agent_client.post(DECISIONS, entry(id="d-1"), format="json")
    assert response.status_code == 201
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert int(response["Content-Length"]) == len(response.content)
    assert response.json()["id"] == "d-1"


@pytest.mark.django_db
def test_key_request__unstorable_query__400_naming_it(agent_client):
    response = agent_client.get(DECISIONS, {"agentId": "tri\x00age"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", "agentId")
    assert error["message"].startswith("agentId contains a NUL character")


@pytest.mark.django_db
def test_key_request__wrong_key__401_as_before(agent):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer lsa_nope_not-a-key")
    with browser_only_calls() as calls:
        response = client.post(DECISIONS, entry(id="d-1"), format="json")
    assert response.status_code == 401
    assert calls == dict.fromkeys(calls, 0)


@pytest.mark.django_db
def test_session_request_to_api__goes_the_whole_way_and_csrf_holds(reviewer):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(reviewer)
    with browser_only_calls() as calls:
        assert client.get(DECISIONS).status_code == 200
    assert calls["SessionMiddleware"] == 1
    assert calls["AuthenticationMiddleware"] == 1
    refused = client.post(f"{DECISIONS}/d-1/response", {"action": "approve"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]


def test_key_request_middleware__the_list_less_the_browser_own_in_order():
    chain = key_request_middleware()
    assert chain == [
        "loopsite.middleware.DatabaseUnavailableMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "loopsite.csp.CSPMiddleware",
        "loopsite.input_checks.RefuseUnstorableText",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "loopsite.errors.PermissionDeniedMiddleware",
    ]


def test_key_request_middleware__a_name_not_in_the_list__refused():
    with (
        override_settings(BROWSER_ONLY_MIDDLEWARE=[*settings.BROWSER_ONLY_MIDDLEWARE, "nowhere.Middleware"]),
        pytest.raises(ValueError, match="nowhere.Middleware"),
    ):
        key_request_middleware()
