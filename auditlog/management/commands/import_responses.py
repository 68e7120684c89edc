"""``import_responses FILE [--dry-run] [--allow-partial]``: a team's spreadsheet of responses (CSV or .xlsx) into
the decision log. All or nothing unless --allow-partial; exits 1 when any row is refused."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from auditlog.imports import ImportFileError, responses_file_read, responses_import

PROGRESS_FROM_ROWS = 500


class Command(BaseCommand):
    help = (
        "Import human responses from a CSV or an Excel .xlsx file (first sheet) whose header row names decision "
        "id, action, responder, respondedAt, and optionally modifiedAction, note and agentId (needed for an id that "
        "several agents use). Refused rows are reported with the reason and the command exits with status 1; "
        "nothing is written then unless --allow-partial, which takes the good rows."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
        parser.add_argument(
            "--allow-partial", action="store_true", help="take the good rows even when some are refused"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            rows = responses_file_read(path)
        except ImportFileError as exc:
            raise CommandError(str(exc)) from None

        def progress(items: Any) -> Any:
            if len(rows) < PROGRESS_FROM_ROWS:
                return items
            return tqdm(items, total=len(rows), unit="row", file=self.stderr._out, desc="importing")

        report = responses_import(
            rows=rows,
            now=timezone.now(),
            dry_run=options["dry_run"],
            partial=options["allow_partial"],
            progress=progress,
        )
        verb = "would be taken" if report.rolled_back else "taken"
        self.stdout.write(f"{len(report.taken)} row(s) {verb}, {len(report.refused)} refused, of {report.rows}.")
        for number, reason in report.refused:
            self.stdout.write(f"  row {number}: refused: {reason}")
        if report.dry_run:
            self.stdout.write("Dry run: nothing was written.")
        elif report.rolled_back:
            self.stdout.write("Nothing was written: fix the refused rows, or pass --allow-partial to take the others.")
        if report.refused and not options["allow_partial"]:
            raise CommandError(f"{len(report.refused)} of {report.rows} row(s) refused")
