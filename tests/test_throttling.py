"""Guessing is throttled: sign-in lockout per username and per address (django-axes), failed bearer keys per
address, and request rates per agent and per person. A throttled request gets 429 with Retry-After."""

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client

from loopsite.cache import DegradingRedisCache
from people.services import token_create
from people.throttling import rate_parse, window_hit
from tests.factories import entry, make_agent, user_with_role
from tests.live_servers import RedisServer, free_port

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-passphrase"


def sign_in(client: Client, username: str, password: str, address: str = "10.0.0.1") -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_sign_in__20_wrong_passwords__locked_even_with_the_right_one_until_unlocked() -> None:
    user = user_with_role("reviewer", username="rita")
    user.set_password(PASSWORD)
    user.save()
    client = Client()
    statuses = [sign_in(client, "rita", f"guess-{i}").status_code for i in range(20)]
    assert statuses[:9] == [200] * 9  # the form again, "did not match"
    assert set(statuses[10:]) == {429}
    locked = sign_in(client, "rita", PASSWORD)
    assert locked.status_code == 429 and "Sign-in locked" in locked.content.decode()
    assert "_auth_user_id" not in client.session

    call_command("axes_reset_username", "rita", stdout=StringIO())
    assert sign_in(client, "rita", PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_sign_in__wrong_passwords_for_many_usernames_from_one_address__the_address_is_locked() -> None:
    user = user_with_role("reviewer", username="rita")
    user.set_password(PASSWORD)
    user.save()
    for i in range(12):
        sign_in(Client(), f"nobody-{i}", "guess", address="10.0.0.9")
    assert sign_in(Client(), "rita", PASSWORD, address="10.0.0.9").status_code == 429
    assert sign_in(Client(), "rita", PASSWORD, address="10.0.0.10").status_code == 302  # another address


def test_bearer__50_bad_keys_from_one_address__429_with_retry_after_then_even_a_good_key_waits() -> None:
    agent, key = make_agent()
    client = Client()
    statuses = []
    for i in range(50):
        response = client.get(
            "/api/v1/config", HTTP_AUTHORIZATION=f"Bearer lsa_bogus{i:04d}_xxxxxxxxxxxxxxxx", REMOTE_ADDR="10.0.0.5"
        )
        statuses.append(response.status_code)
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    good = client.get("/api/v1/config", HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR="10.0.0.5")
    assert good.status_code == 429 and int(good["Retry-After"]) >= 1
    assert good.json()["error"]["code"] == "throttled"
    elsewhere = client.get("/api/v1/config", HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR="10.0.0.6")
    assert elsewhere.status_code == 200


def test_agent_key__over_its_rate__429_for_that_agent_only(settings: Any) -> None:
    settings.LOOPSITE_THROTTLE_RATES = {**settings.LOOPSITE_THROTTLE_RATES, "agent": "3/min"}
    _, key = make_agent()
    _, other = make_agent("other")
    client = Client()
    posts = [
        client.post("/api/v1/decisions", entry(), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")
        for _ in range(4)
    ]
    assert [p.status_code for p in posts] == [201, 201, 201, 429]
    assert 1 <= int(posts[-1]["Retry-After"]) <= 60
    assert client.get("/api/v1/config", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 200


def test_personal_token__over_its_rate__429_per_user(settings: Any) -> None:
    settings.LOOPSITE_THROTTLE_RATES = {**settings.LOOPSITE_THROTTLE_RATES, "person": "2/min"}
    make_agent()
    _, token = token_create(user=user_with_role("approver", username="alice"))
    _, other = token_create(user=user_with_role("approver", username="bob"))
    client = Client()
    statuses = [
        client.get("/api/v1/agents/triage/proposals", HTTP_AUTHORIZATION=f"Bearer {token}").status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert client.get("/api/v1/agents/triage/proposals", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 200


def test_window_hit__cache_cannot_count__the_request_goes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable:
        def add(self, *args: Any, **kwargs: Any) -> bool:
            raise OSError("connection refused")

        incr = get = add

    monkeypatch.setattr("people.throttling.cache", Unreachable())
    monkeypatch.setattr("people.throttling.caches", {"default": Unreachable()})
    assert all(window_hit("failed_key", "10.0.0.1") is None for _ in range(100))


def test_window_hit__redis_refuses_connections__the_request_goes_through(settings: Any) -> None:
    # Redis counts in one pipelined round trip of its own: a refused connection is still a request let through.
    settings.CACHES = {
        "default": {
            "BACKEND": "loopsite.cache.DegradingRedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3, "DOWN_PAUSE": 0.5},
        }
    }
    assert all(window_hit("failed_key", "10.0.0.1") is None for _ in range(100))


@pytest.mark.configured
def test_read_and_count__a_private_redis__counts_reads_and_expires_even_after_its_script_is_flushed(
    tmp_path: Path, settings: Any
) -> None:
    """The throttle's one Redis command is a Lua script called by its hash: a server that does not know it yet
    (new, restarted, or after SCRIPT FLUSH) is sent the script itself, and still counts."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        settings.CACHES = {
            "default": {
                "BACKEND": "loopsite.cache.DegradingRedisCache",
                "LOCATION": server.url,
                "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            }
        }
        backend = caches["default"]
        assert isinstance(backend, DegradingRedisCache)
        backend.set("stamp", {"seen": 1})
        assert backend.read_and_count(["stamp", "absent"], "count", 30) == ({"stamp": {"seen": 1}}, 1)
        assert backend.read_and_count([], "count", 30) == ({}, 2)
        client = redis.Redis.from_url(server.url)
        client.script_flush()
        assert backend.read_and_count(["stamp"], "count", 30) == ({"stamp": {"seen": 1}}, 3)
        assert 0 < client.ttl(backend.make_key("count")) <= 30  # made with its expiry, which counting keeps
        assert backend.read_and_count(["absent"], "other", 5) == ({}, 1)
    finally:
        server.kill()


@pytest.mark.parametrize(
    ("text", "count", "seconds"), [("6000/min", 6000, 60), ("20/10min", 20, 600), ("5/s", 5, 1), ("1/day", 1, 86400)]
)
def test_rate_parse__count_per_window(text: str, count: int, seconds: int) -> None:
    assert (rate_parse(text).count, rate_parse(text).seconds) == (count, seconds)


@pytest.mark.parametrize("text", ["lots", "0/min", "10/fortnight", "10"])
def test_rate_parse__not_a_rate__value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        rate_parse(text)


def test_admin_add_user__common_password__refused() -> None:
    admin = Client()
    admin.force_login(user_with_role("admin"))
    response = admin.post(
        "/admin/auth/user/add/",
        {"username": "newbie", "password1": "password", "password2": "password", "usable_password": "true"},
    )
    assert response.status_code == 200 and "too common" in response.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()
