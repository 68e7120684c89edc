"""Retention of the decision log: weeks older than DECISION_RETENTION_WEEKS are archived and removed.

For each such week, in one transaction: the decisions any proposal, cluster or audit event cites are copied to
the evidence table (``EvidenceDecision``), so every citation still resolves; the week's rows are written to a
compressed CSV file under DECISION_ARCHIVE_DIR (``decisions-2026-03-02.csv.gz`` for the week of Monday 2 March,
a suffix when that name is taken); their registry rows are deleted; and the rows go, by dropping the week's
partition on PostgreSQL, by deleting them elsewhere. The file is complete and synced before anything is removed,
and a failure anywhere removes nothing. Nothing in the audit trail is touched. ``week_restore`` loads a week back.

Ids are remembered for idempotency as long as their decision is kept: after its week is archived, a resent id
is a new decision (contract, "Idempotency").
"""

import csv
import gzip
import io
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper

from auditlog.models import Decision, DecisionKey, EvidenceDecision
from auditlog.partitions import (
    DEFAULT_PARTITION,
    TABLE,
    WEEK,
    is_partitioned,
    partition_make,
    partitions_list,
    week_bounds,
    week_of,
)
from loopsite.exceptions import Conflict, NotFound

logger = logging.getLogger(__name__)

csv.field_size_limit(1 << 30)


class ArchiveMissing(NotFound):
    pass


class WeekPresent(Conflict):
    pass


@dataclass(frozen=True)
class WeekArchived:
    week: date
    rows: int
    kept_as_evidence: int
    path: Path | None


def cited_entry_ids() -> dict[int, set[str]]:
    """{agent pk: entry ids} of every decision cited as evidence: by a proposal (its evidence and samples), a
    cluster of a tuner run, or an audit event."""
    from approvals.models import AuditEvent
    from tuner.models import Cluster, Proposal, ProposalEvidence

    cited: dict[int, set[str]] = {}

    def add(agent_pk: int, ids: Iterable[object]) -> None:
        cited.setdefault(agent_pk, set()).update(str(i) for i in ids)

    for agent_pk, entry_id in ProposalEvidence.objects.values_list("proposal__agent_id", "entry_id").iterator():
        add(agent_pk, [entry_id])
    for agent_pk, ids in Proposal.objects.values_list("agent_id", "sample_entry_ids").iterator():
        add(agent_pk, ids or [])
    for agent_pk, ids in Cluster.objects.values_list("run__agent_id", "sample_entry_ids").iterator():
        add(agent_pk, ids or [])
    for agent_pk, ids in AuditEvent.objects.values_list("agent_id", "evidence_entry_ids").iterator():
        add(agent_pk, ids or [])
    return cited


def retention_cutoff(*, now: datetime, weeks: int) -> datetime:
    """The start of the oldest week kept: the current week and ``weeks - 1`` before it are kept whole."""
    return week_bounds(week_of(now) - (weeks - 1) * WEEK)[0]


def weeks_due(*, now: datetime, weeks: int | None = None) -> list[date]:
    """The weeks older than the retention period that hold decisions (or, on PostgreSQL, an empty partition)."""
    weeks = int(settings.DECISION_RETENTION_WEEKS) if weeks is None else weeks
    if weeks <= 0:
        return []
    cutoff = retention_cutoff(now=now, weeks=weeks)
    due = {p.week for p in partitions_list() if p.week < cutoff.date()}
    oldest = Decision.objects.filter(timestamp__lt=cutoff).order_by("timestamp").values_list("timestamp", flat=True)
    first = oldest.first()
    if first is not None:
        week = week_of(first)
        while week < cutoff.date():
            start, end = week_bounds(week)
            if week in due or Decision.objects.filter(timestamp__gte=start, timestamp__lt=end).exists():
                due.add(week)
            week += WEEK
    return sorted(due)


def _archive_path(folder: Path, week: date) -> Path:
    """A new file for the week: a second archive of the same week (late rows) never overwrites the first."""
    base = f"decisions-{week:%Y-%m-%d}"
    path, n = folder / f"{base}.csv.gz", 1
    while path.exists():
        n += 1
        path = folder / f"{base}.{n}.csv.gz"
    return path


def _week_files(folder: Path, week: date) -> list[Path]:
    base = f"decisions-{week:%Y-%m-%d}"
    return sorted(p for p in folder.glob(f"{base}*.csv.gz") if p.name == f"{base}.csv.gz" or p.name.count(".") == 3)


def _columns() -> list[str]:
    return [str(f.column) for f in Decision._meta.concrete_fields]


def _attname(column: str) -> str:
    return next(f.name for f in Decision._meta.concrete_fields if f.column == column)


def _write_rows(cursor: CursorWrapper, out: io.BufferedWriter, start: datetime, end: datetime) -> None:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in _columns())
    select = f"SELECT {columns} FROM {quote(TABLE)} WHERE timestamp >= %s AND timestamp < %s ORDER BY seq"
    if connection.vendor == "postgresql":
        sql = cursor.cursor.mogrify(select, [start, end])
        with cursor.cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)") as copy:
            for block in copy:
                out.write(block)
        return
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow(_columns())
    cursor.execute(select, [start, end])
    while rows := cursor.fetchmany(5000):
        # SQLite's booleans come back as True/False: written as the 1/0 it stores.
        writer.writerows([int(v) if isinstance(v, bool) else v for v in row] for row in rows)
    text.flush()
    text.detach()


def _keep_evidence(start: datetime, end: datetime, cited: dict[int, set[str]], now: datetime) -> int:
    fields = [f.attname for f in Decision._meta.concrete_fields]
    kept = 0
    for agent_pk, ids in cited.items():
        id_list = sorted(ids)
        for at in range(0, len(id_list), 1000):
            rows = Decision.objects.filter(
                agent_id=agent_pk, timestamp__gte=start, timestamp__lt=end, entry_id__in=id_list[at : at + 1000]
            ).values(*fields)
            made = EvidenceDecision.objects.bulk_create(
                [EvidenceDecision(**row, kept_at=now) for row in rows], ignore_conflicts=True
            )
            kept += len(made)
    return kept


def week_archive(
    week: date, *, folder: Path, cited: dict[int, set[str]], now: datetime, dry_run: bool = False
) -> WeekArchived:
    """Archive and remove one week's decisions (see the module's docstring)."""
    start, end = week_bounds(week)
    quote = connection.ops.quote_name
    partitions = {p.week: p.name for p in partitions_list()}
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Nobody answers or adds to the week while it is written out and removed.
            if week in partitions:
                cursor.execute(f"LOCK TABLE {quote(partitions[week])} IN SHARE MODE")
            if is_partitioned():
                cursor.execute(f"LOCK TABLE {quote(DEFAULT_PARTITION)} IN SHARE MODE")
        rows = Decision.objects.filter(timestamp__gte=start, timestamp__lt=end).count()
        if dry_run:
            kept = sum(
                Decision.objects.filter(
                    agent_id=agent_pk, timestamp__gte=start, timestamp__lt=end, entry_id__in=ids
                ).count()
                for agent_pk, ids in cited.items()
            )
            return WeekArchived(week, rows, kept, None)
        kept = _keep_evidence(start, end, cited, now)
        path = None
        if rows:
            folder.mkdir(parents=True, exist_ok=True)
            path = _archive_path(folder, week)
            partial = path.with_name(path.name + ".partial")
            with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
                _write_rows(cursor, packed, start, end)  # type: ignore[arg-type]
                packed.flush()
            with open(partial, "rb") as written:
                os.fsync(written.fileno())
            partial.rename(path)
        key = quote(DecisionKey._meta.db_table)
        cursor.execute(
            f"DELETE FROM {key} WHERE (entry_id, agent_id) IN (SELECT entry_id, agent_id FROM {quote(TABLE)} "
            "WHERE timestamp >= %s AND timestamp < %s)",
            [start, end],
        )
        if week in partitions:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # a table with pending trigger events cannot go
            cursor.execute(f"DROP TABLE {quote(partitions[week])}")
        cursor.execute(f"DELETE FROM {quote(TABLE)} WHERE timestamp >= %s AND timestamp < %s", [start, end])
    logger.info(
        "decisions.archived",
        extra={"week": week.isoformat(), "rows": rows, "kept_as_evidence": kept, "file": path.name if path else None},
    )
    return WeekArchived(week, rows, kept, path)


def retention_run(
    *,
    now: datetime,
    weeks: int | None = None,
    folder: Path | None = None,
    dry_run: bool = False,
    progress: Callable[[WeekArchived], None] | None = None,
) -> list[WeekArchived]:
    """Archive and remove every week older than the retention period, oldest first."""
    folder = Path(settings.DECISION_ARCHIVE_DIR) if folder is None else folder
    due = weeks_due(now=now, weeks=weeks)
    cited = cited_entry_ids() if due else {}
    done = []
    for week in due:
        result = week_archive(week, folder=folder, cited=cited, now=now, dry_run=dry_run)
        done.append(result)
        if progress is not None:
            progress(result)
    return done


def week_restore(week: date, *, folder: Path | None = None) -> int:
    """Load an archived week back into the decision log (with its registry rows); returns the rows loaded.

    The week's files are renamed ``*.restored`` once loaded, so a later archive of the week writes afresh.
    Refused when the week already holds decisions. The next retention pass archives the week again while it is
    older than the retention period.
    """
    folder = Path(settings.DECISION_ARCHIVE_DIR) if folder is None else folder
    start, end = week_bounds(week)
    if Decision.objects.filter(timestamp__gte=start, timestamp__lt=end).exists():
        raise WeekPresent(
            f"the week of {week:%Y-%m-%d} holds decisions already: restore only an archived week", field="week"
        )
    files = _week_files(folder, week)
    if not files:
        raise ArchiveMissing(f"no archive of the week of {week:%Y-%m-%d} in {folder.name}/", field="week")
    quote = connection.ops.quote_name
    loaded = 0
    with transaction.atomic(), connection.cursor() as cursor:
        if is_partitioned() and week not in {p.week for p in partitions_list()}:
            partition_make(cursor, week)
        for path in files:
            loaded += _read_rows(cursor, path)
        key = quote(DecisionKey._meta.db_table)
        columns = "entry_id, content_hash, agent_id, timestamp"
        conflict = "ON CONFLICT DO NOTHING" if connection.vendor == "postgresql" else ""
        insert = "INSERT" if conflict else "INSERT OR IGNORE"
        cursor.execute(
            f"{insert} INTO {key} ({columns}) SELECT {columns} FROM {quote(TABLE)} "
            f"WHERE timestamp >= %s AND timestamp < %s {conflict}",
            [start, end],
        )
    for path in files:
        path.rename(path.with_name(path.name + ".restored"))
    logger.info("decisions.restored", extra={"week": week.isoformat(), "rows": loaded})
    return loaded


def _read_rows(cursor: CursorWrapper, path: Path) -> int:
    quote = connection.ops.quote_name
    with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader)
        known = set(_columns())
        if not set(header) <= known:
            raise ArchiveMissing(f"{path.name} has columns the decision table lacks: {sorted(set(header) - known)}")
        columns = ", ".join(quote(c) for c in header)
        if connection.vendor == "postgresql":
            text.seek(0)
            count = 0
            try:
                with cursor.cursor.copy(f"COPY {quote(TABLE)} ({columns}) FROM STDIN (FORMAT csv, HEADER)") as copy:
                    while block := text.read(1 << 16):
                        copy.write(block)
                count = cursor.cursor.rowcount
            except Exception as exc:
                raise IntegrityError(f"{path.name} could not be loaded: {exc}") from exc
            return count
        marks = ", ".join(["%s"] * len(header))
        # CSV cannot tell NULL from "" without PostgreSQL's quoting: an empty value is NULL where NULL is allowed.
        nullable = [Decision._meta.get_field(_attname(c)).null for c in header]
        count = 0
        batch: list[list[str | None]] = []
        sql = f"INSERT INTO {quote(TABLE)} ({columns}) VALUES ({marks})"
        for row in reader:
            batch.append([None if v == "" and null else v for v, null in zip(row, nullable, strict=True)])
            if len(batch) == 5000:
                cursor.executemany(sql, batch)
                count, batch = count + len(batch), []
        if batch:
            cursor.executemany(sql, batch)
            count += len(batch)
        return count
