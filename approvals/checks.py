"""``manage.py check`` warns when the application runs as a PostgreSQL role that could rewrite the audit trail.

The triggers refuse UPDATE, DELETE and TRUNCATE of audit rows, but the table's owner can switch them off and a
superuser can do anything. Run the application as a runtime role that owns nothing (docs/postgresql-roles.md) and
migrate as the owner: then no database user the application runs as can alter or remove an audit row.
"""

from typing import Any

from django.core.checks import CheckMessage, Warning, register
from django.db import DatabaseError, connection

from approvals.append_only import TABLE

_ROLE_QUERY = f"""
SELECT r.rolsuper,
       pg_has_role(current_user, t.tableowner, 'MEMBER') AS owns,
       t.tableowner
FROM pg_roles r
LEFT JOIN pg_tables t ON t.tablename = '{TABLE}' AND t.schemaname = current_schema()
WHERE r.rolname = current_user
"""

HINT = "Migrate as the owner role and run the application as a runtime role: see docs/postgresql-roles.md."


@register()
def audit_role_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if connection.vendor != "postgresql":
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute(_ROLE_QUERY)
            row = cursor.fetchone()
    except DatabaseError:
        return []  # the database is down or not set up: other checks and commands say so
    if row is None:
        return []
    superuser, owns, owner = row
    user = connection.settings_dict.get("USER") or "the connection's role"
    messages: list[CheckMessage] = []
    if superuser:
        messages.append(
            Warning(
                f"The application connects to PostgreSQL as a superuser ({user}): it could rewrite the audit trail.",
                hint=HINT,
                id="approvals.W001",
            )
        )
    elif owns:
        messages.append(
            Warning(
                f"The application connects to PostgreSQL as the owner of {TABLE} ({owner}): it could switch off "
                "the triggers that keep the audit trail append-only.",
                hint=HINT,
                id="approvals.W002",
            )
        )
    return messages
