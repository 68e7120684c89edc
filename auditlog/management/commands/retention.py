from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from auditlog.retention import WeekArchived, retention_cutoff, retention_run


class Command(BaseCommand):
    help = (
        "Archive and remove the decision log's weeks older than DECISION_RETENTION_WEEKS: decisions cited as "
        "evidence are kept in the evidence table first, each week goes to a .csv.gz file under "
        "DECISION_ARCHIVE_DIR. restore_week loads a week back. The audit trail is never touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--weeks", type=int, help="weeks to keep (default: DECISION_RETENTION_WEEKS)")
        parser.add_argument("--archive-dir", type=Path, help="where the files go (default: DECISION_ARCHIVE_DIR)")
        parser.add_argument("--dry-run", action="store_true", help="say what would be archived, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        weeks = settings.DECISION_RETENTION_WEEKS if options["weeks"] is None else options["weeks"]
        if weeks < 0:
            self.stderr.write("--weeks must be 0 (keep everything) or more")
            raise SystemExit(2)
        if weeks == 0:
            self.stdout.write("retention is off (0 weeks): every decision is kept")
            return
        now = timezone.now()
        verb = "would archive" if options["dry_run"] else "archived"

        def progress(week: WeekArchived) -> None:
            where = f" to {week.path.name}" if week.path else ""
            self.stdout.write(
                f"{verb} the week of {week.week:%Y-%m-%d}: {week.rows} decisions{where}, "
                f"{week.kept_as_evidence} kept as evidence"
            )

        done = retention_run(
            now=now, weeks=weeks, folder=options["archive_dir"], dry_run=options["dry_run"], progress=progress
        )
        cutoff = retention_cutoff(now=now, weeks=weeks)
        if not done:
            self.stdout.write(f"nothing older than {cutoff:%Y-%m-%d} (keeping {weeks} weeks)")
        else:
            total = sum(w.rows for w in done)
            self.stdout.write(f"{verb} {len(done)} week(s), {total} decisions older than {cutoff:%Y-%m-%d}")
