"""Weekly range partitions of the decision log on PostgreSQL, by decision time.

A week runs from Monday 00:00 UTC to the next Monday. Each week is its own table (``auditlog_decision_w20261130``
for the week of Monday 30 November 2026), attached to the partitioned ``auditlog_decision``; a default partition
(``auditlog_decision_default``) takes whatever falls outside them, so no insert ever fails for want of a week.
Reads that filter on a time range (the tuner's window, the queue, a decision found through its registry row)
touch only that range's weeks. ``partitions_ensure`` (a daily beat task) makes the coming weeks ahead of time and
moves rows that landed in the default partition into their week once it exists; ``auditlog.retention`` archives
and drops old weeks.

SQLite keeps one table: every function here is a no-op there, and retention deletes rows instead.
"""

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from auditlog.references import partition_check, partition_names

logger = logging.getLogger(__name__)

TABLE = "auditlog_decision"
DEFAULT_PARTITION = f"{TABLE}_default"
WEEK = timedelta(weeks=1)
_NAME = re.compile(rf"^{TABLE}_w(\d{{8}})$")


def week_of(moment: datetime) -> date:
    """The Monday (UTC) of ``moment``'s week."""
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def week_bounds(week: date) -> tuple[datetime, datetime]:
    """[start, end) of the week that begins on Monday ``week``."""
    start = datetime.combine(week, time(0), tzinfo=UTC)
    return start, start + WEEK


def partition_name(week: date) -> str:
    return f"{TABLE}_w{week:%Y%m%d}"


def is_partitioned() -> bool:
    """True on PostgreSQL once the decision table is partitioned (migration auditlog 0006)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


@dataclass(frozen=True)
class Partition:
    week: date
    name: str


def partitions_list() -> list[Partition]:
    """The weekly partitions attached now, oldest first (not the default partition)."""
    if not is_partitioned():
        return []
    with connection.cursor() as cursor:
        names = partition_names(cursor)
    found = []
    for name in names:
        match = _NAME.match(name)
        if match:
            found.append(Partition(datetime.strptime(match.group(1), "%Y%m%d").date(), name))
    return sorted(found, key=lambda p: p.week)


def partition_make(cursor: CursorWrapper, week: date) -> None:
    """Make ``week``'s partition, moving into it any of its rows the default partition holds.

    Attaching a week whose rows sit in the default partition would fail; so the week's table is made apart,
    filled from the default partition and attached, in one transaction.
    """
    name, (start, end) = partition_name(week), week_bounds(week)
    quote = connection.ops.quote_name
    cursor.execute(f"CREATE TABLE {quote(name)} (LIKE {quote(TABLE)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {quote(DEFAULT_PARTITION)} WHERE timestamp >= %s AND timestamp < %s "
        f"RETURNING *) INSERT INTO {quote(name)} SELECT * FROM moved",
        [start, end],
    )
    if cursor.rowcount:
        logger.info("partition.filled_from_default", extra={"partition": name, "rows": cursor.rowcount})
    cursor.execute(
        f"ALTER TABLE {quote(TABLE)} ATTACH PARTITION {quote(name)} FOR VALUES FROM (%s) TO (%s)", [start, end]
    )
    partition_take_writes(cursor, name)


def partition_take_writes(cursor: CursorWrapper, name: str) -> None:
    """Make the partition ``name`` ready for rows written to it by name (a batch's ``COPY``, auditlog.services):
    its ``seq`` drawn from the decision table's own sequence (a partition does not inherit the identity), and the
    references check its statements fire (``auditlog.references.partition_check``)."""
    quote = connection.ops.quote_name
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'seq')", [TABLE])
    sequence = cursor.fetchone()[0]
    cursor.execute(f"ALTER TABLE {quote(name)} ALTER COLUMN seq SET DEFAULT nextval(%s::regclass)", [sequence])
    partition_check(cursor, name)


def partitions_taking_writes() -> frozenset[str]:
    """The weekly partitions that rows may be written to by name: those with the sequence's default and the
    references check (``partition_take_writes``). Empty when the table is not partitioned."""
    if connection.vendor != "postgresql":
        return frozenset()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s) "
            "AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = %s) "
            "AND EXISTS (SELECT 1 FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid "
            "AND a.attnum = d.adnum WHERE d.adrelid = c.oid AND a.attname = 'seq')",
            [TABLE, f"{TABLE}_references"],
        )
        return frozenset(name for (name,) in cursor.fetchall() if _NAME.match(name))


def _weeks(first: date, last: date) -> Iterator[date]:
    week = first
    while week <= last:
        yield week
        week += WEEK


def _default_weeks(cursor: CursorWrapper, since: datetime) -> list[date]:
    """The weeks from ``since`` on of the rows waiting in the default partition (a late upload, a replay)."""
    quote = connection.ops.quote_name
    cursor.execute(
        f"SELECT DISTINCT date_trunc('week', timestamp AT TIME ZONE 'UTC')::date FROM {quote(DEFAULT_PARTITION)} "
        "WHERE timestamp >= %s",
        [since],
    )
    return [row[0] for row in cursor.fetchall()]


def partitions_ensure(*, now: datetime, ahead: int | None = None) -> list[str]:
    """Make the partitions of the current week and ``ahead`` weeks after it (DECISION_PARTITION_WEEKS_AHEAD), and
    of every week inside the retention period whose rows wait in the default partition. Returns the names made.

    Weeks older than the retention period stay in the default partition until retention archives them.
    """
    if not is_partitioned():
        return []
    ahead = settings.DECISION_PARTITION_WEEKS_AHEAD if ahead is None else ahead
    current = week_of(now)
    wanted = set(_weeks(current, current + ahead * WEEK))
    retention = int(settings.DECISION_RETENTION_WEEKS)
    since = week_bounds(current - retention * WEEK)[0] if retention else datetime(2, 1, 1, tzinfo=UTC)
    made = []
    with transaction.atomic(), connection.cursor() as cursor:
        # One maker at a time (the beat task, a migration, a test): the lock lasts until the commit.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [TABLE])
        existing = {p.week for p in partitions_list()}
        wanted.update(_default_weeks(cursor, since))
        for week in sorted(wanted - existing):
            partition_make(cursor, week)
            made.append(partition_name(week))
    if made:
        logger.info("partition.created", extra={"partitions": made})
    return made


def table_convert(cursor: CursorWrapper, *, partitioned: bool, now: datetime, ahead: int, behind: int) -> None:
    """Rebuild the decision table as a partitioned one (or back), keeping its rows, indexes, foreign keys and
    triggers.

    Used by migration auditlog 0006 in both directions. The rows are copied once, into weekly partitions made
    first for the weeks from ``behind`` weeks before ``now`` (older rows go to the default partition) to ``ahead``
    weeks after it; indexes are built after the copy. The table is locked for the whole copy: docs/partitions.md
    gives the time it takes and a way to convert a large table with a short lock instead.
    """
    quote = connection.ops.quote_name
    old = f"{TABLE}_unconverted"
    # Checks deferred to the commit would hold the old table: a table with pending trigger events cannot go.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'",
        [TABLE],
    )
    primary_key = cursor.fetchone()[0]
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
        "AND indexname <> %s ORDER BY indexname",
        [TABLE, primary_key],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(%s) "
        "AND contype = 'f' ORDER BY conname",
        [TABLE],
    )
    foreign_keys = cursor.fetchall()
    # The triggers that check the decisions' references (auditlog.references), as they are defined on the table.
    cursor.execute(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal "
        "ORDER BY tgname",
        [TABLE],
    )
    triggers = [row[0] for row in cursor.fetchall()]

    cursor.execute(f"ALTER TABLE {quote(TABLE)} RENAME TO {quote(old)}")
    cursor.execute(f"ALTER INDEX {quote(primary_key)} RENAME TO {quote(old + '_pkey')}")
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {quote(name)}")
    like = f"(LIKE {quote(old)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING STORAGE)"
    if partitioned:
        cursor.execute(f"CREATE TABLE {quote(TABLE)} {like} PARTITION BY RANGE (timestamp)")
        # A partitioned table's keys must hold the partition key; seq alone stays unique through its identity.
        cursor.execute(f"ALTER TABLE {quote(TABLE)} ADD CONSTRAINT {quote(primary_key)} PRIMARY KEY (seq, timestamp)")
        cursor.execute(f"CREATE TABLE {quote(DEFAULT_PARTITION)} PARTITION OF {quote(TABLE)} DEFAULT")
        current = week_of(now)
        for week in _weeks(current - behind * WEEK, current + ahead * WEEK):
            start, end = week_bounds(week)
            cursor.execute(
                f"CREATE TABLE {quote(partition_name(week))} PARTITION OF {quote(TABLE)} FOR VALUES FROM (%s) TO (%s)",
                [start, end],
            )
    else:
        cursor.execute(f"CREATE TABLE {quote(TABLE)} {like}")
        cursor.execute(f"ALTER TABLE {quote(TABLE)} ADD CONSTRAINT {quote(primary_key)} PRIMARY KEY (seq)")
    cursor.execute(f"INSERT INTO {quote(TABLE)} SELECT * FROM {quote(old)}")
    for _name, definition in indexes:
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {quote(TABLE)} ADD CONSTRAINT {quote(name)} {definition}")
    for definition in triggers:
        cursor.execute(definition)
    for name in partition_names(cursor):
        partition_take_writes(cursor, name)
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence(%s, 'seq'), coalesce(max(seq), 1), max(seq) IS NOT NULL) "
        f"FROM {quote(TABLE)}",
        [TABLE],
    )
    cursor.execute(f"DROP TABLE {quote(old)} CASCADE")
