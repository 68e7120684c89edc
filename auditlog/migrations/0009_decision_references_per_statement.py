"""PostgreSQL: the decision table's two foreign keys (agent, config version) become per-statement checks.

A key checked each of a batch's rows on its own; ``auditlog.references`` checks a statement's distinct (agent,
version) pairs at once and keeps referenced rows from being deleted, with the same locks. The model's fields say
``db_constraint=False`` so Django neither makes nor looks for the keys. SQLite keeps its foreign keys: nothing to
do there.
"""

import django.db.models.deletion
from django.db import migrations, models

from auditlog.references import references_check_per_row, references_check_per_statement


def _run(change):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            change(cursor)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("auditlog", "0008_decision_shadow"),
        ("thresholds", "0006_config_version_canary_source"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="decision",
                    name="agent",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="decisions",
                        to="thresholds.agent",
                    ),
                ),
                migrations.AlterField(
                    model_name="decision",
                    name="config_version",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="thresholds.configversion",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(
                    _run(references_check_per_statement), _run(references_check_per_row), elidable=False
                ),
            ],
        ),
    ]
