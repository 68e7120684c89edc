"""The sign-in backend (``AUTHENTICATION_BACKENDS``): Django's ``ModelBackend``, with the signed-in user read in one
plain statement together with the names of their groups.

Every signed-in page reads its user (``get_user``, from the session) and then the user's groups for its role checks
(``people.roles``). Through the ORM, building and compiling the user's ``SELECT`` cost about twice its round trip,
and the groups were a second round trip (docs/bench-queue.md). Here both come from one statement, written once per
process from the models' metadata: the user model's columns, as the ORM reads them, and the group names as one
aggregated column; the user is then built as the ORM builds it (``Model.from_db``). On PostgreSQL the statement is
prepared in the connection's session (``loopsite.statements``): planning it cost more than running it. The groups
are read afresh with every request, as before: a role taken away counts at the next request. Signing in, permissions
and inactive users are ``ModelBackend``'s own, unchanged.
"""

import json
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError
from django.db import connections, router

from loopsite.rows import converted, converters
from loopsite.statements import fetch_one
from people.roles import group_names_select, with_group_names

# The group names as one value: PostgreSQL's array (NULL without groups), SQLite's JSON text.
_AGGREGATES = {"postgresql": "array_agg({})", "sqlite": "json_group_array({})"}


@cache
def _user_sql(alias: str, vendor: str) -> str:
    """The user's columns (``concrete_fields``, in order) and group names, by primary key."""
    meta = get_user_model()._meta
    quote = connections[alias].ops.quote_name
    table = quote(meta.db_table)  # type: ignore[arg-type]
    columns = ", ".join(f"{table}.{quote(f.column)}" for f in meta.concrete_fields)  # type: ignore[arg-type]
    pk = f"{table}.{quote(meta.pk.column)}"  # type: ignore[union-attr,arg-type]
    groups = group_names_select(alias, pk, _AGGREGATES[vendor])
    return f"SELECT {columns}, ({groups}) FROM {table} WHERE {pk} = %s"


class UserBackend(ModelBackend):
    def get_user(self, user_id: Any) -> Any:
        user_model = get_user_model()
        alias = router.db_for_read(user_model)
        connection = connections[alias]
        try:
            pk = user_model._meta.pk.to_python(user_id)  # type: ignore[union-attr]
        except (ValidationError, TypeError, ValueError):  # a session naming no valid id has no user
            return None
        # Prepared on PostgreSQL: planning it cost more than running it.
        row = fetch_one(_user_sql(alias, connection.vendor), [pk], using=alias, prepare=True)
        if row is None:
            return None
        *values, groups = row
        fields = user_model._meta.concrete_fields
        values = converted(connection, values, converters(connection, fields))
        user = user_model.from_db(alias, [f.attname for f in fields], values)
        if isinstance(groups, str):
            groups = json.loads(groups)
        user = with_group_names(user, (g for g in groups or () if g is not None))
        return user if self.user_can_authenticate(user) else None
