"""Django's PostgreSQL backend, with the pool checking a connection before handing it out by its socket, not by a
query, and times read by psycopg's C parser.

Django's pool (``CONN_HEALTH_CHECKS`` on) checks every connection it hands out with an empty query: a round trip
to the server at the start of every request, as many as the request itself makes on the API's hot path.
``connection_check`` asks the socket instead. A connection idle in the pool has nothing to read; when its socket
is readable, the server has closed it (a restart, ``pg_terminate_backend``, an idle timeout) or sent it something,
and only then does the empty query decide. A dead server's connections are thus still never handed out. A
connection whose peer vanished without closing (a network partition) passes either check until its first query
times out; the empty query would have waited as long.

Django reads every ``timestamptz`` through its own loader, a subclass of psycopg's pure-Python one (it sets the
zone the value comes back in), so each time read is parsed in Python: about 5 microseconds a value, 8 % of a
queue page request. ``timestamptz_loader`` gives the same values, zone and all, from psycopg's C parser.
"""

import datetime
import functools
import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg_pool import ConnectionPool

try:  # psycopg's C module (psycopg-binary or psycopg-c): private, so its absence or a move leaves Django's loader
    from psycopg._cmodule import _psycopg
except ImportError:  # pragma: no cover - the project installs psycopg[binary]
    _psycopg = None  # type: ignore[assignment]


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


@functools.cache
def timestamptz_loader(zone: datetime.tzinfo | None) -> type[Loader]:
    """A ``timestamptz`` loader giving what Django's gives (``psycopg_any.register_tzloader``): the value in
    ``zone`` (naive when None), parsed by psycopg's C loader (which cannot be subclassed). That parser gives the
    value in the connection's zone; when that is ``zone`` itself (UTC, as Django sets it), its result is used
    as it is, otherwise labelled with ``zone`` as Django's loader does (``replace``, not ``astimezone``: Django
    sets the session's zone to its own, and so do we)."""

    class TimestamptzLoader(Loader):
        timezone = zone  # Django's ``create_cursor`` compares it with the connection's before every cursor

        def __init__(self, oid: int, context: AdaptContext | None = None):
            super().__init__(oid, context)
            self._parse = _psycopg.TimestamptzLoader(oid, context).load
            if zone is not None and self.connection is not None and self.connection.info.timezone is zone:
                # psycopg calls the instance's ``load``: the C parser's own, with no Python frame per value.
                self.load = self._parse  # type: ignore[method-assign]

        def load(self, data: Buffer) -> datetime.datetime:
            return self._parse(data).replace(tzinfo=zone)  # type: ignore[no-any-return]

    return TimestamptzLoader


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        # Django's adapters for this connection (and its pool's), with its time loader replaced; without the C
        # module (a pure-Python psycopg), Django's stays.
        if "context" in params and _psycopg is not None:
            params["context"].register_loader("timestamptz", timestamptz_loader(self.timezone))
        return params

    @property
    def pool(self) -> Any:
        pool = super().pool
        # Django makes the pool with psycopg_pool's own check when CONN_HEALTH_CHECKS is on; it takes no other.
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = connection_check
        return pool
