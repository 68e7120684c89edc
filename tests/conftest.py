import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
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
