"""A real gunicorn serving the site, with a registered agent, for the agent client to talk to.

On PostgreSQL the server uses pytest-django's test database (the tests are marked
``django_db(transaction=True)`` so that what they write is committed and the server sees it). On SQLite it uses a
database file of its own, migrated once per session with the agent registered, and copied for each test.
"""

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.live_servers import ROOT, Gunicorn, site_env

AGENT_ID = "triage"


@dataclass
class Site:
    server: Gunicorn
    key: str
    agent_id: str
    var_dir: Path
    count: Callable[[], tuple[int, int]]  # (decision rows, distinct entry ids) of the agent

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A migrated embedded database holding the agent ``triage``; its key."""
    var_dir = tmp_path_factory.mktemp("client-template")
    env = site_env(var_dir)
    run = {"cwd": ROOT, "env": env, "check": True, "timeout": 300, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], **run)  # type: ignore[call-overload]
    created = subprocess.run(  # type: ignore[call-overload]
        [
            sys.executable,
            "manage.py",
            "create_agent",
            AGENT_ID,
            "--actions",
            "auto-resolve,flag,escalate",
            "--threshold",
            "flag_threshold=0.6@flag",
            "--threshold",
            "escalate_threshold=0.85@escalate",
        ],
        **run,
    )
    return var_dir, created.stdout.strip().splitlines()[-1]


def _sqlite_count(path: Path) -> Callable[[], tuple[int, int]]:
    def count() -> tuple[int, int]:
        with sqlite3.connect(path) as db:
            rows, distinct = db.execute("SELECT count(*), count(DISTINCT entry_id) FROM auditlog_decision").fetchone()
        return int(rows), int(distinct)

    return count


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    var_dir = tmp_path / "var"
    if settings.IS_POSTGRES:  # the test is marked django_db(transaction=True)
        from auditlog.models import Decision
        from tests.factories import make_agent

        agent, key = make_agent(AGENT_ID)

        def count() -> tuple[int, int]:
            rows = Decision.objects.filter(agent=agent)
            return rows.count(), rows.values("entry_id").distinct().count()

        var_dir.mkdir()
        counter: Callable[[], tuple[int, int]] = count
    else:
        template, key = request.getfixturevalue("sqlite_template")
        shutil.copytree(template, var_dir)
        counter = _sqlite_count(var_dir / "loopsite.sqlite3")
    env = site_env(var_dir)
    server = Gunicorn(env, tmp_path / "gunicorn.log").start()
    try:
        yield Site(server=server, key=key, agent_id=AGENT_ID, var_dir=var_dir, count=counter)
    finally:
        server.stop()


@pytest.fixture
def same_cache_prefix(site: Site, settings: Any) -> None:
    """This process clears cached configs under the server's key prefix, so a change made here is seen there."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "KEY_PREFIX": site.server.env["CACHE_KEY_PREFIX"]},
    }
