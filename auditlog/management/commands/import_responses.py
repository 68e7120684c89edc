"""``import_responses FILE.csv [--dry-run]``: a team's spreadsheet of responses into the decision log."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from auditlog.imports import ImportFileError, responses_csv_read, responses_import

PROGRESS_FROM_ROWS = 500


class Command(BaseCommand):
    help = (
        "Import human responses from a CSV with columns decision id, action, responder, respondedAt, "
        "modifiedAction, note. Refused rows are reported with the reason; a bad file writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="check every row, write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            rows = responses_csv_read(path)
        except ImportFileError as exc:
            raise CommandError(str(exc)) from None

        def progress(items: Any) -> Any:
            if len(rows) < PROGRESS_FROM_ROWS:
                return items
            return tqdm(items, total=len(rows), unit="row", file=self.stderr._out, desc="importing")

        report = responses_import(rows=rows, now=timezone.now(), dry_run=options["dry_run"], progress=progress)
        verb = "would be taken" if report.dry_run else "taken"
        self.stdout.write(f"{len(report.taken)} row(s) {verb}, {len(report.refused)} refused, of {report.rows}.")
        for number, reason in report.refused:
            self.stdout.write(f"  row {number}: refused: {reason}")
        if report.dry_run:
            self.stdout.write("Dry run: nothing was written.")
