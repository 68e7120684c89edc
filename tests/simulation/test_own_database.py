"""``simulate --database NAME``: a clean slate of its own, made anew each run, that leaves the application's
database untouched (a file under var/simulations/ on SQLite, a schema on PostgreSQL)."""

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.conftest import manage_py
from tests.test_postgresql_roles import _admin
from tests.test_settings import LOOPSITE_VARIABLES

RUN = ("simulate", "--scenario=rules", "--weeks=1", "--per-day=30", "--start=2026-01-05", "--no-progress")


def manage(var: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in LOOPSITE_VARIABLES}
    base.update(LOOPSITE_VAR_DIR=str(var), **env)
    return manage_py(*args, env=base)


def test_simulate_own_database__sqlite__fresh_each_run_and_the_main_database_untouched(tmp_path: Path) -> None:
    assert manage(tmp_path, "migrate", "--no-input").returncode == 0
    main = tmp_path / "loopsite.sqlite3"
    before = main.read_bytes()

    for _ in range(2):
        done = manage(tmp_path, *RUN, "--database=trial")
        assert done.returncode == 0, done.stderr
        assert "running in a database of its own: " in done.stdout and "agent sim-rules-1, seed 1" in done.stdout

    own = sqlite3.connect(tmp_path / "simulations" / "trial.sqlite3")
    assert own.execute("SELECT agent_id FROM thresholds_agent").fetchall() == [("sim-rules-1",)]
    assert own.execute("SELECT count(*) FROM auditlog_decision").fetchone() == (210,)
    assert main.read_bytes() == before


@pytest.mark.configured
def test_simulate_own_database__postgresql__a_schema_of_its_own(tmp_path: Path) -> None:
    db = settings.DATABASES["default"]
    name = f"loopsite_own_{os.getpid()}"
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{name}"
    env: dict[str, Any] = {"DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL, "SECRET_KEY": "tests-only"}
    env.update(SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false")
    with _admin() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        assert manage(tmp_path, "migrate", "--no-input", **env).returncode == 0
        for _ in range(2):
            done = manage(tmp_path, *RUN, "--database=trial", **env)
            assert done.returncode == 0, done.stderr
            assert f"running in a database of its own: schema trial of database {name}" in done.stdout
        with psycopg.connect(host=db["HOST"], user=db["USER"], dbname=name, autocommit=True) as conn:
            assert conn.execute("SELECT agent_id FROM trial.thresholds_agent").fetchall() == [("sim-rules-1",)]
            assert conn.execute("SELECT count(*) FROM public.thresholds_agent").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM public.approvals_auditevent").fetchone() == (0,)
            conn.execute("CREATE SCHEMA someone_elses")
        refused = manage(tmp_path, *RUN, "--database=someone_elses", **env)
        assert refused.returncode != 0 and "is not one a simulation made" in refused.stderr
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_simulate__embedded_database_never_migrated__migrates_it_first(tmp_path: Path) -> None:
    """It used to die with `no such table: thresholds_agent`."""
    done = manage(tmp_path, *RUN)
    assert done.returncode == 0, done.stderr
    assert "migrating the embedded database first" in done.stderr and "agent sim-rules-1, seed 1" in done.stdout
