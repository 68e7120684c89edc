"""The session engine (``SESSION_ENGINE``): Django's database sessions, read with one plain SQL statement.

Every signed-in page reads its session. Through the ORM, building and compiling that ``SELECT`` cost three or four
times the round trip itself (about 0.4 ms of a 0.55 ms read, docs/bench-queue.md). The read here is the ORM's own
query, written out once per process from the model's metadata: same table, same columns, same conditions (the key,
and not expired), on the database the router reads sessions from, with the time adapted by the backend as the ORM
adapts it; on PostgreSQL prepared in the connection's session (``loopsite.statements``). Writes, deletes, key
cycling and expiry are Django's own, unchanged.
"""

from functools import cache
from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import connections, router
from django.utils import timezone

from loopsite.statements import fetch_one


@cache
def _select_sql(alias: str, vendor: str) -> str:
    """``SELECT session_data ... WHERE session_key = %s AND expire_date > %s`` for the session model."""
    meta = DatabaseSessionStore.get_model_class()._meta
    quote = connections[alias].ops.quote_name
    data, key, expires = (
        quote(meta.get_field(name).column)  # type: ignore[union-attr,arg-type]
        for name in ("session_data", "session_key", "expire_date")
    )
    return f"SELECT {data} FROM {quote(meta.db_table)} WHERE {key} = %s AND {expires} > %s"


# Sessions signed in before ``people.backends.UserBackend`` replaced Django's ModelBackend name that one; the user
# is read by its replacement, so they stay signed in.
_RENAMED_BACKENDS = {"django.contrib.auth.backends.ModelBackend": "people.backends.UserBackend"}


def _backend_renamed(data: dict[str, Any]) -> dict[str, Any]:
    backend = data.get(BACKEND_SESSION_KEY)
    if backend in _RENAMED_BACKENDS:
        data[BACKEND_SESSION_KEY] = _RENAMED_BACKENDS[backend]
    return data


class SessionStore(DatabaseSessionStore):
    def load(self) -> dict[str, Any]:
        alias = router.db_for_read(self.model)
        connection = connections[alias]
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        row = fetch_one(_select_sql(alias, connection.vendor), [self.session_key, now], using=alias, prepare=True)
        if row is None:
            # As Django's: an unknown or expired key is forgotten, so a new session gets a new key.
            self._session_key = None
            return {}
        return _backend_renamed(self.decode(row[0]))
