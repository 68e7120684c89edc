"""Entry ids become unique per agent: the registry's key is (entry_id, agent_id) instead of entry_id alone.

A table's primary key cannot be changed in place the same way on SQLite and PostgreSQL, so the registry is
rebuilt: a new table with a surrogate key and the unique constraint, every row copied into it, the old table
dropped and the new one renamed to the old name. Rows keep their values; ids stay unique (they were globally).
Reversing copies the rows back, and fails on an id that two agents have come to share since.
"""

from django.db import migrations, models

COLUMNS = '"entry_id", "content_hash", "agent_id", "timestamp"'
COPY_FORWARD = f'INSERT INTO "auditlog_decisionkeyperagent" ({COLUMNS}) SELECT {COLUMNS} FROM "auditlog_decisionkey"'
COPY_BACK = f'INSERT INTO "auditlog_decisionkey" ({COLUMNS}) SELECT {COLUMNS} FROM "auditlog_decisionkeyperagent"'


class Migration(migrations.Migration):

    dependencies = [
        ("auditlog", "0004_decision_confidence_optional"),
    ]

    operations = [
        migrations.CreateModel(
            name="DecisionKeyPerAgent",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("entry_id", models.CharField(max_length=128)),
                ("content_hash", models.CharField(max_length=64)),
                ("agent_id", models.BigIntegerField()),
                ("timestamp", models.DateTimeField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("entry_id", "agent_id"), name="decision_key_unique_per_agent")
                ],
            },
        ),
        migrations.RunSQL(COPY_FORWARD, reverse_sql=COPY_BACK),
        migrations.DeleteModel(name="DecisionKey"),
        migrations.RenameModel(old_name="DecisionKeyPerAgent", new_name="DecisionKey"),
        migrations.AlterField(
            model_name="decision",
            name="entry_id",
            field=models.CharField(help_text="The seed's id; unique per agent through DecisionKey.", max_length=128),
        ),
    ]
