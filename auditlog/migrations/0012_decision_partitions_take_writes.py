"""PostgreSQL: every partition of the decision table takes rows written to it by name.

A batch's ``COPY`` goes straight into its week's partition (``auditlog.services``): PostgreSQL then inserts many
rows at a time, where a ``COPY`` into the partitioned table with its statement trigger goes row by row. For that,
each partition draws ``seq`` from the decision table's sequence and carries the references check
(``auditlog.partitions.partition_take_writes``); partitions made from now on get both when they are made.
"""

from django.db import migrations

from auditlog.partitions import partition_take_writes
from auditlog.references import DECISION, partition_names


def forwards(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in partition_names(cursor):
            partition_take_writes(cursor, name)


def backwards(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in partition_names(cursor):
            cursor.execute(f'DROP TRIGGER IF EXISTS {DECISION}_references ON "{name}"')
            cursor.execute(f'ALTER TABLE "{name}" ALTER COLUMN seq DROP DEFAULT')


class Migration(migrations.Migration):
    dependencies = [("auditlog", "0011_decision_agent_responded_covering_on_sqlite")]

    operations = [migrations.RunPython(forwards, backwards)]
