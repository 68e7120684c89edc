"""The two PostgreSQL roles of a deployment (docs/postgresql-roles.md).

- The **owner** role owns the database and its tables: it runs ``migrate`` and ``grant_runtime_role``.
- The **runtime** role is what the web, the worker and beat connect as: it reads and writes rows, and nothing
  more. No DDL, no TRUNCATE, no ownership, and on the audit trail only SELECT and INSERT, so the append-only
  triggers are a second line: the first is that it was never allowed to change an audit row.
"""

from psycopg import sql

from approvals.append_only import TABLE as AUDIT_TABLE

READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"


def runtime_role_grants(*, role: str, owner: str, schema: str, database: str) -> list[sql.Composed]:
    """The statements that give ``role`` what the application needs at run time, for the tables that exist now
    and (through default privileges) for those later migrations of ``owner`` create."""
    r, o, s, db = sql.Identifier(role), sql.Identifier(owner), sql.Identifier(schema), sql.Identifier(database)
    audit = sql.Identifier(schema, AUDIT_TABLE)
    return [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, r),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(s, r),
        sql.SQL(f"GRANT {READ_WRITE} ON ALL TABLES IN SCHEMA {{}} TO {{}}").format(s, r),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, r),
        sql.SQL(f"ALTER DEFAULT PRIVILEGES FOR ROLE {{}} IN SCHEMA {{}} GRANT {READ_WRITE} ON TABLES TO {{}}").format(
            o, s, r
        ),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}").format(
            o, s, r
        ),
        # The audit trail: read and append only.
        sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}").format(audit, r),
    ]
