"""Importing a team's existing spreadsheet of responses (CSV or Excel .xlsx) into the decision log.

Two steps, so a bad file writes nothing: ``responses_file_read`` reads and checks the whole file first (not CSV
or xlsx, or required columns missing: ``ImportFileError``); ``responses_import`` then records every row through
``response_record`` (source ``import``) in ONE transaction. A row the rules refuse (unknown decision, already
answered, bad action...) is reported with its row number and the reason; the good rows are taken only when
``partial`` allows it, else the whole import is rolled back.

Decision ids are unique per agent: an optional ``agentId`` column says whose id a row names. A row without it
is taken while only one agent uses that id, and refused, saying so, when several do.
"""

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.db import transaction

from auditlog.services import response_record
from loopsite.exceptions import DomainError

logger = logging.getLogger(__name__)

# Accepted header names, compared lower-case with spaces, dashes and underscores removed.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "decisionid", "decision", "entryid"),
    "agentId": ("agentid", "agent"),
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
    rolled_back: bool = False

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
            "decision id, action, responder, respondedAt; optional agentId, modifiedAction, note)"
        )
    return found


def responses_file_read(path: Path) -> list[CsvRow]:
    """Read and check the whole file, CSV or (by its .xlsx name) Excel. Raises ``ImportFileError`` for a file that
    cannot be used."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path.name}: {exc.strerror}") from None
    if path.suffix.lower() == ".xlsx":
        return _rows(_xlsx_records(raw, path.name))
    return _rows(_csv_records(raw, path.name))


def _xlsx_records(raw: bytes, name: str) -> list[list[str]]:
    """The first sheet's rows as text. A date cell without a time zone is read as UTC; a whole number as an
    integer (an id typed as 1042 is stored as 1042.0)."""
    import zipfile

    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ImportFileError(f"{name} is not an Excel .xlsx file ({exc})") from None
    try:
        records = [[_cell_text(v) for v in row] for row in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()
    if not any(any(cell for cell in r) for r in records):
        raise ImportFileError(f"{name} is empty")
    return records


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _csv_records(raw: bytes, name: str) -> list[list[str]]:
    if b"\x00" in raw:
        raise ImportFileError(f"{name} is not a CSV file (binary content; an Excel file must be named .xlsx)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError(f"{name} is not a CSV file (not UTF-8 text)") from None
    if not text.strip():
        raise ImportFileError(f"{name} is empty")
    try:
        dialect: type[csv.Dialect] = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        return list(csv.reader(io.StringIO(text, newline=""), dialect))
    except csv.Error as exc:
        raise ImportFileError(f"{name} is not a CSV file: {exc}") from None


def _rows(records: list[list[str]]) -> list[CsvRow]:
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
    partial: bool = True,
    progress: Callable[[Iterable[CsvRow]], Iterable[CsvRow]] = lambda r: r,
) -> ImportReport:
    """Record every row's response in one transaction. It is rolled back with ``dry_run``, and when a row is
    refused unless ``partial`` (then ``report.rolled_back`` says so)."""
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
                        agent_id=row.values.get("agentId") or None,
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
        if dry_run or (report.refused and not partial):
            report.rolled_back = True
            transaction.set_rollback(True)
    logger.info(
        "responses.imported",
        extra={"taken": len(report.taken), "refused": len(report.refused), "dry_run": dry_run},
    )
    return report
