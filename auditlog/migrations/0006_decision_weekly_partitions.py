"""PostgreSQL: the decision log becomes a table partitioned by week of decision time (auditlog.partitions).

The table is rebuilt: renamed, a partitioned table made in its place with the same columns, identity, indexes and
foreign keys, a partition for each week from the retention period's start to DECISION_PARTITION_WEEKS_AHEAD
weeks ahead plus a default partition, every row copied, the old table dropped. It holds a lock on the table for
the whole copy: docs/partitions.md gives the time it takes per million rows and a short-lock way for a large
table. The model does not change (the primary key becomes (seq, timestamp) in the database only). Reversing
rebuilds a plain table the same way. SQLite keeps one table: nothing to do.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

from auditlog.partitions import table_convert


def _convert(partitioned: bool):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            table_convert(
                cursor,
                partitioned=partitioned,
                now=timezone.now(),
                ahead=settings.DECISION_PARTITION_WEEKS_AHEAD,
                behind=min(settings.DECISION_RETENTION_WEEKS or 26, 104),
            )

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("auditlog", "0005_decision_key_unique_per_agent"),
    ]

    operations = [migrations.RunPython(_convert(True), _convert(False), elidable=False)]
