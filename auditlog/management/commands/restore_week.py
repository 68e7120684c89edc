from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from auditlog.partitions import week_of
from auditlog.retention import week_restore
from loopsite.exceptions import DomainError


class Command(BaseCommand):
    help = (
        "Load an archived week of decisions back into the decision log, with their ids (a resend is a duplicate "
        "again). WEEK is any day of the week, YYYY-MM-DD. The next retention pass archives it again while it is "
        "older than the retention period."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("week", help="a day of the week to restore, YYYY-MM-DD")
        parser.add_argument("--archive-dir", type=Path, help="where the files are (default: DECISION_ARCHIVE_DIR)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            day = date.fromisoformat(options["week"])
        except ValueError:
            raise CommandError(f"week must be a date, YYYY-MM-DD, not {options['week']!r}") from None
        monday = week_of(datetime.combine(day, time(12), tzinfo=UTC))
        try:
            rows = week_restore(monday, folder=options["archive_dir"])
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"restored the week of {monday:%Y-%m-%d}: {rows} decisions")
