"""The server degrades instead of failing: the cache and the broker are optional, the database is required.

Faults are injected into private processes (a redis-server, a TCP proxy in front of PostgreSQL, a gunicorn) that
each test starts on a free port and kills; the machine's PostgreSQL and Redis are never touched.
"""

import json
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client as DjangoClient
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown
from rest_framework.test import APIClient

from auditlog.models import Decision
from loopsite.models import OutboxMessage
from loopsite.outbox import outbox_drain
from tests.conftest import client_for
from tests.factories import NOW, entry, make_agent
from tests.live_servers import Gunicorn, RedisServer, TcpProxy, database_url, site_env
from thresholds.selectors import config_get_live
from thresholds.services import config_version_activate


def agent_api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def post(client: APIClient, body: Any, path: str = "/api/v1/decisions") -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


# --- The broker and the mail server: the outbox -------------------------------------------------------------


@pytest.mark.django_db
def test_tuner_run_request__broker_down__202_work_kept_in_the_outbox_and_sent_when_it_is_back(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    agent, _ = make_agent()
    admin = client_for(_admin())
    sent: list[int] = []

    def broker_down(pk: int) -> None:
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("tuner.tasks.tuner_cycle_task.delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(f"/api/v1/agents/{agent.agent_id}/tuner-runs")
    assert response.status_code == 202
    message = OutboxMessage.objects.get(handler="tuner.cycle")
    assert message.status == "pending" and message.attempts == 1 and "Connection refused" in message.last_error
    assert message.kwargs == {"agent_pk": agent.pk}

    monkeypatch.setattr("tuner.tasks.tuner_cycle_task.delay", lambda pk: sent.append(pk))
    assert outbox_drain(now=message.created_at) == 0  # not due yet: it backs off
    assert outbox_drain(now=message.available_at + timedelta(seconds=1)) == 1
    assert sent == [agent.pk]
    message.refresh_from_db()
    assert message.status == "sent" and message.attempts == 2 and message.last_error == ""
    assert outbox_drain(now=message.available_at + timedelta(hours=1)) == 0  # sent once, never again


@pytest.mark.django_db
def test_rollback_by_hand__mail_server_down__change_made_email_sent_later(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    from approvals.services import config_rollback

    agent, _ = make_agent()
    approver = _admin()
    agent.approvers.add(approver)
    config_version_activate(
        agent=agent, values={"flag_threshold": 0.65, "escalate_threshold": 0.85}, source="manual", now=NOW
    )

    def smtp_down(*args: Any, **kwargs: Any) -> int:
        raise ConnectionRefusedError("smtp: connection refused")

    monkeypatch.setattr("approvals.notifications.send_mail", smtp_down)
    with django_capture_on_commit_callbacks(execute=True):
        version = config_rollback(agent=agent, to_version=1, actor=approver, reason="too many misses", now=NOW)
    assert version.number == 3 and version.is_live
    message = OutboxMessage.objects.get(handler="notify.rollback")
    assert message.status == "pending" and "connection refused" in message.last_error

    monkeypatch.undo()
    assert outbox_drain(now=message.available_at) == 1
    assert len(mailoutbox) == 1 and "triage: rolled back v2" in mailoutbox[0].subject


def _admin() -> Any:
    from tests.factories import user_with_role

    return user_with_role("admin", username="root-admin", email="root@example.com")


# --- The cache: Redis stopped ---------------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path, settings: Any) -> Any:
    """A redis-server of this test's own, as the cache of this process."""
    redis = RedisServer(tmp_path / "redis").start()
    settings.CACHES = {
        "default": {
            "BACKEND": "loopsite.cache.DegradingRedisCache",
            "LOCATION": redis.url,
            "KEY_PREFIX": "degrade-test",
            "OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3, "DOWN_PAUSE": 0.5},
        }
    }
    settings.REDIS_URL = redis.url
    yield redis
    redis.kill()


@pytest.mark.configured
@pytest.mark.django_db
def test_redis_killed_during_ingest__decisions_batches_and_config_reads_keep_answering_2xx(private_redis: Any) -> None:
    agent, key = make_agent()
    client = agent_api(key)
    assert post(client, entry()).status_code == 201
    assert client.get("/api/v1/agents/triage/config").status_code == 200  # now cached in Redis

    private_redis.kill()
    statuses = []
    slowest = 0.0
    for i in range(30):
        began = time.monotonic()
        statuses.append(post(client, entry(id=f"down-{i}")).status_code)
        statuses.append(post(client, {"entries": [entry(id=f"batch-{i}")]}, "/api/v1/decisions/batch").status_code)
        statuses.append(client.get("/api/v1/agents/triage/config").status_code)
        statuses.append(client.get("/api/v1/config").status_code)
        slowest = max(slowest, time.monotonic() - began)
    assert set(statuses) <= {200, 201}, statuses
    assert slowest < 2.0
    assert Decision.objects.filter(agent=agent).count() == 61
    health = DjangoClient().get("/healthz")
    assert health.status_code == 503 and health.json()["database"] == "ok"
    assert health.json()["cache"] == "degraded"

    private_redis.start()  # a new server on the same port: the cache is back
    time.sleep(0.6)  # past DOWN_PAUSE: the next read tries Redis again
    assert client.get("/api/v1/agents/triage/config").status_code == 200
    assert caches["default"].get(f"live-config:v3:{agent.pk}") is not None  # cached again


@pytest.mark.configured
@pytest.mark.django_db
def test_redis_frozen__reads_answer_from_the_database_within_the_socket_timeout(private_redis: Any) -> None:
    _, key = make_agent()
    client = agent_api(key)
    assert client.get("/api/v1/config").status_code == 200
    private_redis.pause()  # connections hang: every Redis call waits for its socket timeout
    try:
        began = time.monotonic()
        statuses = [post(client, entry(id=f"frozen-{i}")).status_code for i in range(10)]
        statuses += [client.get("/api/v1/config").status_code for _ in range(10)]
        assert set(statuses) <= {200, 201}
        assert time.monotonic() - began < 3.0  # one timeout, then the breaker skips Redis
    finally:
        private_redis.resume()


@pytest.mark.configured
@pytest.mark.django_db
def test_redis_unreachable_while_config_changes__new_version_served_and_stale_entry_dropped_when_it_is_back(
    private_redis: Any, settings: Any
) -> None:
    # Redis keeps its data but cannot be reached (a network cut): the delete of the cached config cannot land.
    proxy = TcpProxy(private_redis.port).restore()
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{proxy.port}/0"},
    }
    agent, key = make_agent()
    client = agent_api(key)
    try:
        assert client.get("/api/v1/config").json()["version"] == 1  # cached
        proxy.cut()
        config_version_activate(
            agent=agent, values={"flag_threshold": 0.65, "escalate_threshold": 0.85}, source="manual", now=NOW
        )
        body = client.get("/api/v1/config").json()
        assert body["version"] == 2 and body["thresholds"]["flag_threshold"] == 0.65
        assert OutboxMessage.objects.filter(handler="cache.delete", status="pending").exists()

        proxy.restore()
        time.sleep(0.6)  # past DOWN_PAUSE
        assert caches["default"].get(f"live-config:v3:{agent.pk}").version == 1  # stale, as Redis kept it
        assert outbox_drain(now=timezone.now() + timedelta(minutes=1)) >= 1
        assert client.get("/api/v1/config").json()["version"] == 2
        assert config_get_live(agent=agent).version == 2
    finally:
        proxy.cut()


# --- The database: PostgreSQL unreachable -----------------------------------------------------------------------


def _request(url: str, *, key: str = "", body: Any = None) -> tuple[int, dict[str, str], bytes, float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    began = time.monotonic()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read(), time.monotonic() - began
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read(), time.monotonic() - began


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_postgresql_unreachable__json_503_with_retry_after_within_2s__first_requests_after_it_is_back_succeed(
    tmp_path: Path,
) -> None:
    from django.db import connection

    _, key = make_agent()
    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432)).restore()
    url = database_url().replace(f":{connection.settings_dict['PORT'] or 5432}/", f":{proxy.port}/")
    server = Gunicorn(site_env(tmp_path / "var", DATABASE_URL=url), tmp_path / "gunicorn.log")
    (tmp_path / "var").mkdir()
    server.start()
    try:
        status, _, body, _ = _request(f"{server.url}/api/v1/decisions", key=key, body=entry(id="before"))
        assert status == 201, body

        proxy.cut()
        for i in range(3):
            status, headers, body, seconds = _request(f"{server.url}/api/v1/decisions", key=key, body=entry(id=f"d{i}"))
            assert status == 503, body
            assert seconds < 2.0
            assert headers["Retry-After"].isdigit() and headers["Content-Type"].startswith("application/json")
            assert json.loads(body)["error"]["code"] == "unavailable"
        # The agent's own config needs no database while this process keeps its key and live config, both checked
        # against stamps in Redis (which is up): it is still served.
        status, headers, body, seconds = _request(f"{server.url}/api/v1/config", key=key)
        assert status == 200 and seconds < 2.0 and json.loads(body)["version"] == 1
        status, _, body, seconds = _request(f"{server.url}/healthz")
        assert status == 503 and seconds < 2.0
        assert json.loads(body)["database"] == "degraded"

        proxy.restore()
        status, _, body, seconds = _request(f"{server.url}/api/v1/decisions", key=key, body=entry(id="after"))
        assert status == 201, body  # the pool checked its connections: none of the dead ones was handed out
        statuses = [_request(f"{server.url}/api/v1/config", key=key)[0] for _ in range(5)]
        assert statuses == [200] * 5
        assert _request(f"{server.url}/healthz")[0] in (200, 503)  # 503 only if the broker is what is missing
    finally:
        server.stop()
        proxy.cut()
    assert set(Decision.objects.values_list("entry_id", flat=True)) == {"before", "after"}
