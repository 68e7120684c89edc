"""Django's PostgreSQL backend, with the pool checking a connection before handing it out by its socket, not by a
query.

Django's pool (``CONN_HEALTH_CHECKS`` on) checks every connection it hands out with an empty query: a round trip
to the server at the start of every request, as many as the request itself makes on the API's hot path.
``connection_check`` asks the socket instead. A connection idle in the pool has nothing to read; when its socket
is readable, the server has closed it (a restart, ``pg_terminate_backend``, an idle timeout) or sent it something,
and only then does the empty query decide. A dead server's connections are thus still never handed out. A
connection whose peer vanished without closing (a network partition) passes either check until its first query
times out; the empty query would have waited as long.
"""

import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def connection_check(conn: psycopg.Connection[Any]) -> None:
    """Raise when ``conn`` cannot be used; a round trip only when its socket says something happened. (The pool
    hands out only idle connections: it rolls back whatever comes back to it in a transaction.)"""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        quiet = not poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        quiet = False
    if not quiet:
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool
        # Django makes the pool with psycopg_pool's own check when CONN_HEALTH_CHECKS is on; it takes no other.
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = connection_check
        return pool
