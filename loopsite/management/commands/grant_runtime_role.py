"""``grant_runtime_role ROLE``: as the owner role, after ``migrate``, give the runtime role what it needs."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from loopsite.db_roles import runtime_role_grants


class Command(BaseCommand):
    help = (
        "PostgreSQL only. Run as the owner role after migrate: lets ROLE (the role the application runs as) read "
        "and write rows, but not change the schema, truncate, or alter or remove audit rows. "
        "See docs/postgresql-roles.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the runtime role (it must exist: CREATE ROLE ... LOGIN)")
        parser.add_argument("--print", action="store_true", help="print the statements instead of running them")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("grant_runtime_role is for PostgreSQL (DATABASE_URL=postgres://...)")
        role = options["role"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user, current_schema(), current_database()")
            owner, schema, database = cursor.fetchone()
            if role == owner:
                raise CommandError(f"{role} is the role running this command: the runtime role must be another one")
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
            row = cursor.fetchone()
            if row is None:
                raise CommandError(f"no role {role!r}: CREATE ROLE {role} LOGIN PASSWORD '...' first")
            if row[0]:
                raise CommandError(f"{role} is a superuser: the runtime role must not be one")
            statements = runtime_role_grants(role=role, owner=owner, schema=schema, database=database)
            if options["print"]:
                for statement in statements:
                    self.stdout.write(statement.as_string(cursor.connection) + ";")
                return
            with transaction.atomic():
                for statement in statements:
                    cursor.execute(statement)
        self.stdout.write(
            f"{role} may now read and write the rows of {database}.{schema}, append to the audit trail and nothing "
            f"more; run this again after each migrate by another role than {owner}."
        )
