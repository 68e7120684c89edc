"""Importing a team's existing spreadsheet of responses (CSV) into the decision log.

Two steps, so a bad file writes nothing: ``responses_csv_read`` reads and checks the whole file first (not CSV,
or required columns missing: ``ImportFileError``); ``responses_import`` then records every row through
``response_record`` (source ``import``) in ONE transaction. A row the rules refuse (unknown decision, already
answered, bad action...) is reported with its row number and the reason, and the good rows are taken.
"""

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.db import transaction

from auditlog.services import response_record
from loopsite.exceptions import DomainError

logger = logging.getLogger(__name__)

# Accepted header names, compared lower-case with spaces, dashes and underscores removed.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "decisionid", "decision", "entryid"),
    "action": ("action", "response", "responseaction"),
    "responder": ("responder", "responderid", "reviewer"),
    "respondedAt": ("respondedat", "respondedtime", "respondedon"),
    "modifiedAction": ("modifiedaction", "modifiedto"),
    "note": ("note", "notes", "comment"),
}
REQUIRED = ("id", "action", "responder", "respondedAt")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (not CSV, required columns missing)."""


@dataclass(frozen=True)
class CsvRow:
    number: int  # the spreadsheet's row number: the header is row 1
    values: dict[str, str]


@dataclass
class ImportReport:
    taken: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def rows(self) -> int:
        return len(self.taken) + len(self.refused)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lstrip("\ufeff").lower())


def _columns(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = _norm(name)
        for column, aliases in COLUMN_ALIASES.items():
            if key in aliases and column not in found:
                found[column] = index
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise ImportFileError(
            "not a responses CSV: missing column(s) " + ", ".join(missing) + " (the header row must name "
            "decision id, action, responder, respondedAt; optional modifiedAction, note)"
        )
    return found


def responses_csv_read(path: Path) -> list[CsvRow]:
    """Read and check the whole file. Raises ``ImportFileError`` for a file that is not a usable CSV."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path.name}: {exc.strerror}") from None
    if b"\x00" in raw:
        raise ImportFileError(f"{path.name} is not a CSV file (binary content)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError(f"{path.name} is not a CSV file (not UTF-8 text)") from None
    if not text.strip():
        raise ImportFileError(f"{path.name} is empty")
    try:
        dialect: type[csv.Dialect] = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as exc:
        raise ImportFileError(f"{path.name} is not a CSV file: {exc}") from None
    columns = _columns(records[0])
    rows = []
    for offset, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue  # blank lines a spreadsheet leaves at the end
        values = {name: (record[i].strip() if i < len(record) else "") for name, i in columns.items()}
        rows.append(CsvRow(number=offset, values=values))
    return rows


def _row_refusal(row: CsvRow) -> str | None:
    for column in REQUIRED:
        if not row.values.get(column):
            return f"{column} is empty"
    return None


def responses_import(
    *,
    rows: list[CsvRow],
    now: datetime,
    dry_run: bool = False,
    progress: Callable[[Iterable[CsvRow]], Iterable[CsvRow]] = lambda r: r,
) -> ImportReport:
    """Record every row's response in one transaction; with ``dry_run`` the transaction is rolled back."""
    report = ImportReport(dry_run=dry_run)
    with transaction.atomic():
        for row in progress(rows):
            reason = _row_refusal(row)
            if reason is None:
                raw: dict[str, str] = {"action": row.values["action"].lower(), "respondedAt": row.values["respondedAt"]}
                if row.values.get("modifiedAction"):
                    raw["modifiedAction"] = row.values["modifiedAction"]
                if row.values.get("note"):
                    raw["note"] = row.values["note"]
                try:
                    response_record(
                        entry_id=row.values["id"],
                        raw=raw,
                        responder_id=row.values["responder"],
                        now=now,
                        source="import",
                    )
                except DomainError as exc:
                    reason = exc.message
            if reason is None:
                report.taken.append(row.number)
            else:
                report.refused.append((row.number, reason))
        if dry_run:
            transaction.set_rollback(True)
    logger.info(
        "responses.imported",
        extra={"taken": len(report.taken), "refused": len(report.refused), "dry_run": dry_run},
    )
    return report
