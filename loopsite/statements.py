"""Statements run with their parameters sent apart from the text (server-side binding) and, when asked, prepared.

Django's PostgreSQL cursors quote every parameter into the statement's text (client-side binding), so PostgreSQL
parses and plans each statement afresh. For the statements every request runs, that is most of their cost: the
signed-in user's read with their groups took 0.38 ms through a Django cursor, 0.28 ms with its parameters bound
on the server and 0.11 ms prepared (timed in turn on the development machine), its plan costing twenty times its
execution. ``fetch`` runs such a statement on the connection's own psycopg cursor, still through Django's execute
wrappers and, when queries are logged, its query log, so what inspects the queries (``CaptureQueriesContext``,
``connection.execute_wrapper``) sees them as any other.

A prepared statement lives in its database session, which the connection pool keeps between requests. Behind a
transaction-mode pooler that cannot keep them (PgBouncer before 1.21), ``DB_PREPARE=off`` turns preparing off
(``loopsite.settings``); ``fetch`` then binds on the server without preparing. Django's own cursors never prepare.
"""

from collections.abc import Sequence
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorDebugWrapper


def fetch(sql: str, params: Sequence[Any], *, using: str = DEFAULT_DB_ALIAS, prepare: bool = False) -> list[Any]:
    """The rows of ``sql`` (``%s`` placeholders) on the PostgreSQL database ``using``, its parameters bound on the
    server; prepared in the connection's session at its first run when ``prepare`` (and preparing is on)."""
    connection = connections[using]

    def execute(sql: str, params: Sequence[Any], _many: bool, _context: dict[str, Any]) -> list[Any]:
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=prepare)
            return cursor.fetchall()

    with connection.cursor() as wrapper, connection.wrap_database_errors:
        if isinstance(wrapper, CursorDebugWrapper):
            with wrapper.debug_sql(sql, params):
                return wrapper._execute_with_wrappers(sql, params, False, execute)  # type: ignore[no-any-return]
        return wrapper._execute_with_wrappers(sql, params, False, execute)  # type: ignore[no-any-return]


def fetch_one(
    sql: str, params: Sequence[Any], *, using: str = DEFAULT_DB_ALIAS, prepare: bool = False
) -> tuple[Any, ...] | None:
    """The first row of ``sql``, or None: on PostgreSQL through ``fetch``, elsewhere (SQLite) on Django's cursor."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        rows = fetch(sql, params, using=using, prepare=prepare)
        return tuple(rows[0]) if rows else None
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None
