"""The audit trail stays append-only, with one narrow exception: a simulation agent's scratch history.

A DELETE passes only when both hold, checked by the database itself:
- the row's agent has a simulation id (``sim-``, ``replay-`` or ``demo-``), read from the agent table; and
- the transaction declared the purge of exactly that agent (``SET LOCAL loopsite.purge_agent = '<pk>'``),
  which ``simulation.runner.agent_purge`` does.
A real agent's trail can never be deleted, and UPDATE is refused for every row.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION approvals_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('loopsite.purge_agent', true) = OLD.agent_id::text
       AND EXISTS (SELECT 1 FROM thresholds_agent a
                   WHERE a.id = OLD.agent_id AND a.agent_id ~ '^(sim|replay|demo)-') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION USING
        MESSAGE = 'approvals_auditevent is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

STRICT = """
CREATE OR REPLACE FUNCTION approvals_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'approvals_auditevent is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(STRICT)


class Migration(migrations.Migration):
    dependencies = [("approvals", "0003_audit_event_append_only_trigger"), ("thresholds", "0002_config_version_links_and_constraints")]

    operations = [migrations.RunPython(forwards, backwards)]
