"""SQLite: ``decision_agent_responded`` carries in its key the columns PostgreSQL's carries as ``INCLUDE``, and the
review reason, so that the reads of responded decisions by time are read from the index alone there too.

SQLite has no ``INCLUDE`` (Django leaves it out), so the index there was (agent, timestamp, seq) only, and the
watchdog's hourly counts (``approvals.selectors.error_counts``: action and review reason of every responded
decision in a version's time) read each row from the table: a quarter of an 8-week simulation's watchdog time
(docs/bench-simulate.md). The index keeps its name, so Django's own changes to it still find it. PostgreSQL's is
unchanged.
"""

from django.db import migrations

WIDE = (
    "CREATE INDEX decision_agent_responded ON auditlog_decision "
    "(agent_id, timestamp, seq, action, response_action, modified_action, review_reason) "
    "WHERE response_action IS NOT NULL"
)
NARROW = (
    "CREATE INDEX decision_agent_responded ON auditlog_decision (agent_id, timestamp, seq) "
    "WHERE response_action IS NOT NULL"
)


def _on_sqlite(create: str):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "sqlite":
            return
        schema_editor.execute("DROP INDEX IF EXISTS decision_agent_responded")
        schema_editor.execute(create)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("auditlog", "0010_decision_agent_responded"),
    ]

    operations = [
        migrations.RunPython(_on_sqlite(WIDE), _on_sqlite(NARROW), elidable=False),
    ]
