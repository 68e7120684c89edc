"""A database of its own for a simulation, replay or demo run: a clean slate that deletes nothing shared.

The audit trail is append-only for every agent, so a run that wants to start from nothing cannot purge an
agent's history from the shared tables. It runs in a database of its own instead, named by the command's
``--database NAME``:

- embedded (SQLite): the file ``var/simulations/NAME.sqlite3``, made anew for each run;
- configured (PostgreSQL): the schema ``NAME`` of the configured database, made anew for each run (and only a
  schema an earlier run made: one it did not make is refused). The role needs CREATE on the database: run it as
  the owner role (docs/postgresql-roles.md), never as the runtime role.

The run's tables are migrated there, the cache keys are kept apart, and the application's own database is not
touched. Browse the result by pointing a server at it (docs/simulation.md).
"""

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.test.utils import override_settings

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SCHEMA_COMMENT = "loopsite simulation database"


class OwnDatabaseRefused(ValueError):
    pass


def sqlite_path(name: str) -> Path:
    return Path(settings.VAR_DIR) / "simulations" / f"{name}.sqlite3"


def _name_check(name: str) -> None:
    if not NAME_PATTERN.match(name) or name == "public" or name.startswith("pg_"):
        raise OwnDatabaseRefused(
            f"--database {name!r}: use 1-40 lower-case letters, digits and underscores, starting with a letter "
            "(not public, not pg_...)"
        )


def _schema_fresh(name: str) -> None:
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        if cursor.fetchone()[0] == name:
            raise OwnDatabaseRefused(f"--database {name!r} is the application's own schema")
        cursor.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            [name],
        )
        row = cursor.fetchone()
        if row is not None and row[0] != SCHEMA_COMMENT:
            raise OwnDatabaseRefused(f"schema {name!r} exists and is not one a simulation made: choose another name")
        cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        cursor.execute(f'CREATE SCHEMA "{name}"')
        cursor.execute(f"COMMENT ON SCHEMA \"{name}\" IS '{SCHEMA_COMMENT}'")


@contextmanager
def own_database(name: str) -> Iterator[str]:
    """Point the default connection at a fresh, migrated database ``name`` for the block; says where it is."""
    _name_check(name)
    connection = connections["default"]
    saved = copy.deepcopy(connection.settings_dict)
    if connection.vendor == "sqlite":
        path = sqlite_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        connection.close()
        connection.settings_dict["NAME"] = str(path)
        where = str(path.relative_to(settings.BASE_DIR) if path.is_relative_to(settings.BASE_DIR) else path)
    else:
        _schema_fresh(name)
        _disconnect(connection)
        options = dict(connection.settings_dict.get("OPTIONS") or {})
        options["options"] = f"{options.get('options', '')} -c search_path={name}".strip()
        connection.settings_dict["OPTIONS"] = options
        where = f"schema {name} of database {saved['NAME']}"
    caches = copy.deepcopy(settings.CACHES)
    for cache in caches.values():
        cache["KEY_PREFIX"] = f"{cache.get('KEY_PREFIX', '')}sim-{name}-"
    try:
        with override_settings(CACHES=caches):
            call_command("migrate", verbosity=0, interactive=False)
            yield where
    finally:
        _disconnect(connection)
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def _disconnect(connection: Any) -> None:
    """Close the connection and, on PostgreSQL, its pool, which would hand out connections of the old settings."""
    connection.close()
    if hasattr(connection, "close_pool"):
        connection.close_pool()


def database_argument(parser: Any) -> None:
    parser.add_argument(
        "--database",
        metavar="NAME",
        default=None,
        help="run in a fresh database of its own (SQLite: var/simulations/NAME.sqlite3; PostgreSQL: schema NAME), "
        "leaving the application's database untouched",
    )


@contextmanager
def database_for(name: str | None, *, out: Any, err: Any) -> Iterator[None]:
    """Where a command's run goes (its ``--database``): a fresh database of its own when named, said on ``out``;
    else the application's, made ready first (``database_ready``, said on ``err``)."""
    if name is None:
        database_ready(err)
        yield
        return
    with own_database(name) as where:
        out(f"running in a database of its own: {where}")
        yield


def database_ready(say: Any) -> None:
    """Before a run: an embedded database that is new or behind is migrated here (``say`` tells so); a configured
    one is the operator's to migrate, so the run stops with the one line that says what to run."""
    from django.db.migrations.executor import MigrationExecutor

    connection = connections["default"]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return
    if connection.vendor != "sqlite":
        raise OwnDatabaseRefused(
            f"the database has {len(plan)} migrations to apply: run `manage.py migrate` first (as the owner role)"
        )
    say(f"migrating the embedded database first ({len(plan)} migrations)")
    call_command("migrate", verbosity=0, interactive=False)
