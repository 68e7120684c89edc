import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from rest_framework.test import APIClient

from tests.factories import NOW, make_agent, user_with_role

# Every user the tests make has a password: hashed once, not a million times (tests/hashers.py).
settings.PASSWORD_HASHERS = ["tests.hashers.OneIterationPBKDF2"]

_real_connect = socket.socket.connect


def _local_only(self: socket.socket, address: Any) -> Any:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host.startswith("127.") or host in {"localhost", "::1", "0.0.0.0"} or host.startswith("/")
    ):
        raise RuntimeError(f"tests may not reach the network: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing leaves the machine; the LLM is faked at its HTTP transport instead."""
    monkeypatch.setattr(socket.socket, "connect", _local_only)


@pytest.fixture(scope="session", autouse=True)
def _flush_as_the_owner() -> Iterator[None]:
    """Tests that commit (live server, threads) empty the database after themselves with TRUNCATE or DELETE,
    which the audit trail's triggers refuse: the flush runs as the test database's owner, triggers off."""
    from django.db.backends.base.operations import BaseDatabaseOperations

    from tests.audit_owner import append_only_suspended

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: Any, sql_list: Any) -> None:
        with append_only_suspended(self.connection):
            original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign,assignment]
    yield
    BaseDatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_cache(settings: Any) -> Iterator[None]:
    """Each test starts with an empty cache of its own. The embedded file cache is shared by every process on
    the machine, so tests use an in-memory one instead; Redis (the configured tier) is kept and cleared."""
    from django.core.cache import cache

    if "FileBasedCache" in settings.CACHES["default"]["BACKEND"]:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
    else:
        # The machine's Redis is never flushed: tests keep to keys of their own, and clear() deletes only those.
        settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"loopsite-tests-{os.getpid()}"}}
    from loopsite.context_processors import nav_counts_forget

    cache.clear()
    nav_counts_forget()  # this process's copies of the menu's figures, read from the cache just cleared
    yield
    cache.clear()
    nav_counts_forget()


@pytest.fixture(autouse=True)
def _partitions_read_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision partitions a batch writes to by name are read again in each test (tests make and drop weeks)."""
    import math

    from auditlog import services

    monkeypatch.setattr(services, "_direct", (-math.inf, frozenset()))


@pytest.fixture
def now() -> Any:
    return NOW


@pytest.fixture
def agent_and_key(db: None) -> tuple[Any, str]:
    return make_agent()


@pytest.fixture
def agent(agent_and_key: tuple[Any, str]) -> Any:
    return agent_and_key[0]


@pytest.fixture
def agent_client(agent_and_key: tuple[Any, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_and_key[1]}")
    return client


@pytest.fixture
def reviewer(db: None) -> Any:
    return user_with_role("reviewer", username="rita")


@pytest.fixture
def approver(db: None) -> Any:
    return user_with_role("approver", username="alice")


@pytest.fixture
def admin_user(db: None) -> Any:
    return user_with_role("admin", username="root-admin")


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (it cannot download a browser of its own here). Missing: the test
    fails saying how to install it, never skips."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the tests' ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ServerRequests:
    """The live server's requests, counted by Django's own signals (the server runs in a thread of this process):
    those still being handled, all seen, and the most at once. A request counts until its response is closed, after
    its last database statement."""

    def __init__(self) -> None:
        self.active = 0
        self.seen = 0
        self.most = 0
        self._lock = threading.Lock()

    def started(self, **kwargs: Any) -> None:
        with self._lock:
            self.active += 1
            self.seen += 1
            self.most = max(self.most, self.active)

    def finished(self, **kwargs: Any) -> None:
        with self._lock:
            self.active -= 1

    def wait_idle(self, timeout: float = 10.0, quiet: float = 0.2) -> None:
        """Until no request has been in progress for ``quiet`` seconds (a beacon sent as a page is left may reach
        the server a moment after the browser let it go)."""
        deadline = time.monotonic() + timeout
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            if self.active > 0:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= quiet:
                return
            time.sleep(0.02)


class OneRequestAtATime:
    """A WSGI app answering one request at a time, each response read whole before the next request starts.

    The live server shares the test's in-memory SQLite connection with all its request threads, and statements
    run from two threads on one sqlite3 connection mix their results: an UPDATE's row count can be the other
    thread's (a reviewer's own claim read as lost, "rita is reviewing ...; skipped", once in a CI run). On their
    own connections (PostgreSQL, a SQLite file) requests stay concurrent, as they are in production."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            response = self.app(environ, start_response)
            try:
                body = b"".join(response)
            finally:
                if hasattr(response, "close"):
                    response.close()  # Django's request_finished: the request's last statement
        return [body]


def live_server_shares_a_connection() -> bool:
    """Whether pytest-django hands the live server's threads the test's own connection (in-memory SQLite)."""
    connection: Any = connections["default"]
    return connection.vendor == "sqlite" and bool(connection.is_in_memory_db())


@pytest.fixture(scope="session")
def live_server(django_db_setup: None, live_server: Any) -> Any:
    """pytest-django's live server, started after the test database exists (so it always shares an in-memory
    SQLite connection, whichever test comes first); on that connection it answers one request at a time."""
    if live_server_shares_a_connection():
        httpd = live_server.thread.httpd
        httpd.set_app(OneRequestAtATime(httpd.get_app()))
    return live_server


def manage_py(*args: str, env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess[str]:
    """``manage.py ARGS`` in a fresh interpreter with exactly ``env``, its output captured as text."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def data_file(*parts: str) -> Path:
    """A file of the shared data sets. Missing: fail under CI (LOOPSITE_REQUIRE_DATA=1), else skip."""
    path = Path(settings.LOOPSITE_DATA_DIR, *parts)
    if not path.exists():
        message = f"data file missing: {path} (set LOOPSITE_DATA_DIR)"
        if os.environ.get("LOOPSITE_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Configured-tier tests run in the PostgreSQL + Redis pass; on SQLite they are not collected."""
    if settings.IS_POSTGRES and settings.REDIS_URL:
        return
    if os.environ.get("LOOPSITE_REQUIRE_SERVICES") == "1":
        raise pytest.UsageError(
            "LOOPSITE_REQUIRE_SERVICES=1 but DATABASE_URL/REDIS_URL do not name PostgreSQL and Redis"
        )
    kept = [item for item in items if item.get_closest_marker("configured") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
