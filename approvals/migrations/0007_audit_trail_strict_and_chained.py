"""The audit trail becomes strictly append-only on both databases, and every row joins its agent's hash chain.

- The escape hatch of 0004 (a declared purge of a simulation agent's rows) is gone: no DELETE passes, for any
  agent. TRUNCATE is refused too, and the triggers fire even under ``session_replication_role = replica``.
- SQLite gets the same refusal of UPDATE and DELETE.
- Existing rows are chained in the order they were written (by id, per agent). That one-time fill is the owner's
  migration writing the new columns: the row trigger is switched off for it and on again in this transaction.
"""

from django.db import migrations, models

from approvals.append_only import ROW_TRIGGER, TABLE, append_only_install
from approvals.chain import GENESIS, fields_of, row_hash


def chain_existing_rows(apps, schema_editor):
    connection = schema_editor.connection
    AuditEvent = apps.get_model("approvals", "AuditEvent")
    if connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {ROW_TRIGGER}")
    heads: dict[int, str] = {}
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        prev_hash = heads.get(event.agent_id, GENESIS)
        event_hash = row_hash(prev_hash=prev_hash, fields=fields_of(event))
        AuditEvent.objects.filter(pk=event.pk).update(prev_hash=prev_hash, hash=event_hash)
        heads[event.agent_id] = event_hash
    append_only_install(connection)


def unchain(apps, schema_editor):
    """Back to 0006: the TRUNCATE trigger and SQLite's triggers go (the row trigger on PostgreSQL stays)."""
    if schema_editor.connection.vendor == "sqlite":
        for op in ("update", "delete"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{op}")
    elif schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS approvals_auditevent_no_truncate ON {TABLE}")


class Migration(migrations.Migration):
    dependencies = [("approvals", "0006_audit_kind_rules_changed")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(
                default="", editable=False, max_length=64, help_text="The hash of the agent's row before this one."
            ),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(
                default="", editable=False, max_length=64, help_text="SHA-256 of prev_hash and this row's content."
            ),
        ),
        migrations.RunPython(chain_existing_rows, unchain),
    ]
