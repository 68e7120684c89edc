"""The two-role PostgreSQL setup of docs/postgresql-roles.md, followed step by step on a scratch database.

The application, running as the runtime role, can append to the audit trail and can neither alter nor remove a
row: not by UPDATE, DELETE or TRUNCATE, not by switching the triggers off, not as a replica session. And
``manage.py check`` warns when the connection is the owner or a superuser.
"""

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.conftest import manage_py

pytestmark = pytest.mark.configured

HOSTILE = [
    ("UPDATE approvals_auditevent SET message = 'x'", "permission denied"),
    ("DELETE FROM approvals_auditevent", "permission denied"),
    ("TRUNCATE approvals_auditevent", "permission denied"),
    ("ALTER TABLE approvals_auditevent DISABLE TRIGGER approvals_auditevent_append_only", "must be owner"),
    ("SET session_replication_role = replica", "permission denied"),
    ("CREATE TABLE sneaky (id int)", "permission denied"),
    ("DROP TABLE approvals_auditevent", "must be owner"),
]


def _admin() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname="postgres", autocommit=True
    )


@pytest.fixture
def scratch() -> Iterator[dict[str, str]]:
    """Two new roles and a database owned by the owner role (what the docs' first step makes)."""
    tag = f"{os.getpid()}"
    names = {"owner": f"loopsite_owner_{tag}", "app": f"loopsite_app_{tag}", "db": f"loopsite_roles_{tag}"}
    with _admin() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {names['db']} WITH (FORCE)")
        for role in (names["app"], names["owner"]):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {names['owner']} LOGIN")
        admin.execute(f"CREATE ROLE {names['app']} LOGIN")
        admin.execute(f"CREATE DATABASE {names['db']} OWNER {names['owner']}")
    try:
        yield names
    finally:
        with _admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {names['db']} WITH (FORCE)")
            for role in (names["app"], names["owner"]):
                admin.execute(f"DROP ROLE IF EXISTS {role}")


def manage(role: str, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{role}@{db['HOST']}:{db['PORT'] or 5432}/{database}",
    }
    return manage_py(*args, env=env)


def test_two_roles__runtime_role_appends_and_cannot_alter_or_remove_audit_rows(scratch: dict[str, str]) -> None:
    owner, app, db = scratch["owner"], scratch["app"], scratch["db"]
    migrated = manage(owner, db, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr
    granted = manage(owner, db, "grant_runtime_role", app)
    assert granted.returncode == 0, granted.stderr
    assert f"{app} may now read and write the rows" in granted.stdout

    # The application at work as the runtime role: a user, an agent, a lock (an audit row).
    for command in (
        ("create_user", "alice", "--role", "approver", "--password", "a-long-passphrase-9"),
        ("create_agent", "payments", "--threshold", "flag_threshold=0.6"),
        ("lock_config", "payments", "--by", "alice", "--reason", "converged"),
        ("verify_audit", "payments"),
    ):
        done = manage(app, db, *command)
        assert done.returncode == 0, f"{command}: {done.stderr}"
    checked = manage(app, db, "check")
    assert checked.returncode == 0 and "approvals.W00" not in checked.stderr + checked.stdout

    with psycopg.connect(host="127.0.0.1", user=app, dbname=db, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*) FROM approvals_auditevent").fetchone()
        assert rows is not None and rows[0] >= 1
        for statement, refusal in HOSTILE:
            with pytest.raises(psycopg.Error, match=refusal):
                conn.execute(statement)
        after = conn.execute("SELECT count(*), count(*) FILTER (WHERE message = 'x') FROM approvals_auditevent")
        assert after.fetchone() == (rows[0], 0)

    as_owner = manage(owner, db, "check")
    assert "approvals.W002" in as_owner.stderr and f"owner of approvals_auditevent ({owner})" in as_owner.stderr


@pytest.mark.django_db
def test_check__superuser_connection__warned() -> None:
    """The tests connect as the machine's superuser."""
    from approvals.checks import audit_role_check

    assert [m.id for m in audit_role_check()] == ["approvals.W001"]
