from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.utils import timezone

from auditlog.partitions import DEFAULT_PARTITION, is_partitioned, partitions_ensure, partitions_list


class Command(BaseCommand):
    help = (
        "PostgreSQL: make the decision log's weekly partitions for the current week and the weeks ahead "
        "(DECISION_PARTITION_WEEKS_AHEAD), move rows waiting in the default partition into their week, and list the "
        "partitions with their rows. The beat task does the same daily; run this as the owner role."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ahead", type=int, help="weeks ahead of the current one (default: the setting)")
        parser.add_argument("--list", action="store_true", help="only list, make nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if not is_partitioned():
            self.stdout.write("the decision log is one table here (SQLite): nothing to partition")
            return
        if options["ahead"] is not None and options["ahead"] < 0:
            self.stderr.write("--ahead must be 0 or more")
            raise SystemExit(2)
        if not options["list"]:
            made = partitions_ensure(now=timezone.now(), ahead=options["ahead"])
            self.stdout.write(f"made {len(made)} partition(s)" + (f": {', '.join(made)}" if made else ""))
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            for partition in partitions_list() + [None]:
                name = DEFAULT_PARTITION if partition is None else partition.name
                cursor.execute(f"SELECT count(*) FROM {quote(name)}")
                label = "default" if partition is None else f"week of {partition.week:%Y-%m-%d}"
                self.stdout.write(f"{name}  {label}  {cursor.fetchone()[0]} decisions")
