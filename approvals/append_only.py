"""The database itself keeps the audit trail append-only (contract rule 8), on both databases.

PostgreSQL: a row trigger refuses UPDATE and DELETE, a statement trigger refuses TRUNCATE (also when it cascades
from another table). Both are ``ENABLE ALWAYS``, so ``session_replication_role = replica`` does not skip them.
SQLite: triggers refuse UPDATE and DELETE. There is no exception for any agent or session setting.

What a trigger cannot stop is the table's owner dropping it or switching it off: the runtime role is not the owner
(docs/postgresql-roles.md, and the check in approvals.checks), and the hash chain (approvals.chain) makes what an
owner did detectable.

``append_only_install`` is idempotent. It runs in the migration that made the trail strict and after every
``migrate`` (approvals.apps), because SQLite drops a table's triggers whenever a migration rebuilds the table.
"""

from typing import Any

TABLE = "approvals_auditevent"
ROW_TRIGGER = "approvals_auditevent_append_only"
TRUNCATE_TRIGGER = "approvals_auditevent_no_truncate"

POSTGRESQL = f"""
CREATE OR REPLACE FUNCTION approvals_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = '{TABLE} is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS {ROW_TRIGGER} ON {TABLE};
CREATE TRIGGER {ROW_TRIGGER} BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION approvals_auditevent_append_only();
DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {TABLE};
CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION approvals_auditevent_append_only();
ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER {ROW_TRIGGER};
ALTER TABLE {TABLE} ENABLE ALWAYS TRIGGER {TRUNCATE_TRIGGER};
"""

SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_{op.lower()} BEFORE {op} ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {op} refused'); END"
    for op in ("UPDATE", "DELETE")
]


def append_only_install(connection: Any) -> None:
    """Create (or re-create) the triggers on ``connection``'s audit table."""
    if TABLE not in connection.introspection.table_names():
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL)
        elif connection.vendor == "sqlite":
            for statement in SQLITE:
                cursor.execute(statement)
