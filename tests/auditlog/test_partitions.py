"""The decision log partitioned by week on PostgreSQL (auditlog.partitions): weeks made ahead, a default partition
that never refuses a row, rows moved into their week once it exists, a batch's rows written to their week by name
with the references still checked, reads pruned to the window's weeks, and the tuner's output the same on the
partitioned table as on a plain one."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from auditlog import services
from auditlog.models import Decision
from auditlog.partitions import (
    DEFAULT_PARTITION,
    is_partitioned,
    partition_name,
    partitions_ensure,
    partitions_list,
    partitions_taking_writes,
    table_convert,
    week_of,
)
from tests.factories import entry, make_agent
from tests.tuner.helpers import log_rows, output
from tests.tuner.test_cycle import flag_too_low_rows
from thresholds.models import ConfigVersion
from tuner.generators import StatisticalGenerator
from tuner.selectors import cycle_window, window_decisions
from tuner.services import tuner_cycle_run

pytestmark = [pytest.mark.configured, pytest.mark.django_db]


def _home(entry_id: str) -> str:
    """The partition a decision's row is stored in."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM auditlog_decision WHERE entry_id = %s", [entry_id])
        return cursor.fetchone()[0]


def _drop_partition(week: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE "{partition_name(week)}"')


def test_partitions__table_is_partitioned_with_a_default_and_weeks_ahead() -> None:
    assert is_partitioned()
    weeks = {p.week for p in partitions_list()}
    current = week_of(timezone.now())
    assert {current + timedelta(weeks=k) for k in range(5)} <= weeks  # this week and 4 ahead (the default)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [DEFAULT_PARTITION])
        assert cursor.fetchone()[0]


def test_partitions_ensure__makes_missing_weeks_ahead_once() -> None:
    current = week_of(timezone.now())
    far = current + timedelta(weeks=7)
    assert far not in {p.week for p in partitions_list()}

    made = partitions_ensure(now=timezone.now(), ahead=7)

    assert partition_name(far) in made and partition_name(current + timedelta(weeks=6)) in made
    assert far in {p.week for p in partitions_list()}
    assert partitions_ensure(now=timezone.now(), ahead=7) == []


def test_insert__week_without_partition__lands_in_default_then_moves_to_its_week() -> None:
    now = timezone.now()
    agent, _ = make_agent(now=now - timedelta(weeks=3))
    last_week = week_of(now) - timedelta(weeks=1)
    _drop_partition(last_week)  # as if the beat task had not run yet: no insert may fail for it
    at = now - timedelta(weeks=1)
    (entry_id,) = log_rows(agent, [{"confidence": 0.7, "at": at, "response": "dismiss"}], now=now)
    old = "old-" + entry_id
    log_rows(agent, [{"id": old, "confidence": 0.7, "at": now.replace(year=2020), "response": None}], now=now)
    assert _home(entry_id) == DEFAULT_PARTITION and _home(old) == DEFAULT_PARTITION

    made = partitions_ensure(now=now)

    assert made == [partition_name(last_week)]
    assert _home(entry_id) == partition_name(last_week)
    assert _home(old) == DEFAULT_PARTITION  # older than the retention period: left for retention
    moved = Decision.objects.get(entry_id=entry_id)
    assert moved.response_action == "dismiss" and moved.timestamp == at


def _takes_writes(name: str) -> tuple[bool, bool]:
    """(the references check is on ``name``, its seq is drawn from the decision table's sequence)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s), "
            "coalesce((SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
            "ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
            "WHERE d.adrelid = to_regclass(%s) AND a.attname = 'seq'), "
            "'') LIKE '%%' || split_part(pg_get_serial_sequence('auditlog_decision', 'seq'), '.', 2) || '%%'",
            [name, "auditlog_decision_references", name],
        )
        checked, numbered = cursor.fetchone()
    return bool(checked), bool(numbered)


def test_partitions__every_week_and_the_default__checked_and_numbered_when_written_by_name() -> None:
    far = week_of(timezone.now()) + timedelta(weeks=9)
    partitions_ensure(now=timezone.now(), ahead=9)  # a week made now, as the beat task makes them

    names = [p.name for p in partitions_list()]
    assert partition_name(far) in names
    assert {name: _takes_writes(name) for name in [*names, DEFAULT_PARTITION]} == {
        name: (True, True) for name in [*names, DEFAULT_PARTITION]
    }
    assert set(names) == set(partitions_taking_writes())


def test_partition_written_by_name__another_agents_version_refused__its_own_numbered_from_the_table() -> None:
    """What the decision table's check refuses, a statement that names a week's partition is refused too."""
    now = timezone.now()
    agent, _ = make_agent(now=now - timedelta(weeks=1))
    other, _ = make_agent("payments", now=now - timedelta(weeks=1))
    (logged,) = log_rows(agent, [{"confidence": 0.7, "at": now - timedelta(hours=1), "response": None}], now=now)
    home = _home(logged)
    assert home == partition_name(week_of(now - timedelta(hours=1)))
    columns = [str(f.column) for f in Decision._meta.concrete_fields if f.column not in ("seq", "entry_id")]
    listed = ", ".join(columns)

    def copy_into_week(version_pk: int) -> None:
        chosen = listed.replace("config_version_id", str(version_pk))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{home}" (entry_id, {listed}) SELECT %s, {chosen} FROM auditlog_decision '
                "WHERE entry_id = %s",
                [f"copy-{version_pk}", logged],
            )

    with pytest.raises(IntegrityError, match="that agent has no such version"):
        copy_into_week(ConfigVersion.objects.get(agent=other, is_live=True).pk)
    copy_into_week(ConfigVersion.objects.get(agent=agent, is_live=True).pk)

    first, second = Decision.objects.filter(agent=agent).order_by("seq").values_list("seq", flat=True)
    assert second > first  # drawn from the decision table's own sequence


def _agent_and_week(weeks_back: int) -> tuple[Any, Any, Any]:
    """Now, an agent made three weeks ago, and the Monday ``weeks_back`` weeks before this week's."""
    now = timezone.now()
    agent, _ = make_agent(now=now - timedelta(weeks=3))
    return now, agent, week_of(now) - timedelta(weeks=weeks_back)


def test_batch__each_weeks_rows_written_to_its_partition_by_name__a_week_without_one_through_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now, agent, two_weeks_ago = _agent_and_week(2)
    _drop_partition(two_weeks_ago)  # its rows go through the decision table, into the default partition
    written: list[str] = []
    copy = services._copy

    def recorded(sql: str, rows: Any, types: Any) -> None:
        written.append(sql.split(" (")[0])
        copy(sql, rows, types)

    monkeypatch.setattr(services, "_copy", recorded)
    at = {"now": now - timedelta(minutes=1), "last": now - timedelta(weeks=1), "gap": now - timedelta(weeks=2)}
    ids = log_rows(agent, [{"id": k, "confidence": 0.7, "at": t, "response": None} for k, t in at.items()], now=now)

    assert ids == ["now", "last", "gap"]
    assert {i: _home(i) for i in ids} == {
        "now": partition_name(week_of(at["now"])),
        "last": partition_name(week_of(at["last"])),
        "gap": DEFAULT_PARTITION,
    }
    assert sorted(written) == sorted(
        [
            'COPY "auditlog_decisionkey"',
            f'COPY "{partition_name(week_of(at["now"]))}"',
            f'COPY "{partition_name(week_of(at["last"]))}"',
            'COPY "auditlog_decision"',
        ]
    )
    assert len(set(Decision.objects.filter(agent=agent).values_list("seq", flat=True))) == 3


def test_batch__a_week_dropped_after_the_process_read_the_partitions__stored_through_the_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now, agent, last_week = _agent_and_week(1)
    assert partition_name(last_week) in services._direct_partitions()  # read, and kept for minutes
    _drop_partition(last_week)  # retention, or a hand, drops it meanwhile

    (logged,) = log_rows(agent, [{"confidence": 0.7, "at": now - timedelta(weeks=1), "response": None}], now=now)

    assert _home(logged) == DEFAULT_PARTITION
    assert "decision.partition_write_failed" in caplog.text
    body = entry(agent.agent_id, id="after", timestamp=(now - timedelta(minutes=2)).isoformat())
    assert services.decision_log_batch(entries=[body], now=now, acting_agent=agent)[0].status == "created"


def test_batch__connection_lost_while_writing_a_week__raised_and_its_weeks_still_written_by_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now, agent, _ = _agent_and_week(0)
    taking_writes = services._direct_partitions()
    copy = services._copy

    def lost_on_the_week(sql: str, rows: Any, types: Any) -> None:
        if partition_name(week_of(now)) in sql:
            raise OperationalError("server closed the connection unexpectedly")
        copy(sql, rows, types)

    monkeypatch.setattr(services, "_copy", lost_on_the_week)
    body = entry(agent.agent_id, id="lost", timestamp=(now - timedelta(minutes=1)).isoformat())

    with pytest.raises(OperationalError):
        services.decision_log_batch(entries=[body], now=now, acting_agent=agent)

    assert "decision.partition_write_failed" not in caplog.text  # a lost connection is not the partition's fault
    assert services._direct_partitions() == taking_writes  # and does not send the next minutes through the table
    assert not Decision.objects.filter(entry_id="lost").exists()


def test_window_read__pruned_to_the_windows_weeks() -> None:
    now = timezone.now()
    agent, _ = make_agent(now=now - timedelta(weeks=5))
    window = cycle_window(agent=agent, now=now)

    plan = window_decisions(agent=agent, window=window).explain()

    scanned = set(re.findall(r" on (auditlog_decision_(?:w\d{8}|default)) ", plan))
    weeks = {partition_name(week_of(window.start) + timedelta(weeks=k)) for k in range(5)}
    assert scanned, plan
    assert scanned <= weeks, plan  # neither older weeks nor the default partition
    assert len(partitions_list()) > len(weeks)  # so pruning has something to prune


def _cycle(agent: Any, now: Any) -> dict[str, Any]:
    """One cycle's output, rolled back so the next can run the same cycle again."""
    result: dict[str, Any] = {}
    with pytest.raises(RuntimeError), transaction.atomic():
        run = tuner_cycle_run(agent=agent, now=now, generator=StatisticalGenerator())
        result.update(output(run))
        raise RuntimeError("roll back")
    return result


def test_tuner__same_output_on_partitioned_and_plain_table() -> None:
    now = timezone.now().replace(microsecond=0)
    agent, _ = make_agent(now=now - timedelta(weeks=5))
    log_rows(agent, flag_too_low_rows(seed=3, now=now), now=now)
    homes = {_home(d) for d in Decision.objects.values_list("entry_id", flat=True)[:400]}
    assert len(homes) >= 4 and DEFAULT_PARTITION not in homes  # spread over the weekly partitions

    partitioned = _cycle(agent, now)
    with connection.cursor() as cursor:
        table_convert(cursor, partitioned=False, now=now, ahead=4, behind=26)
    assert not is_partitioned()
    plain = _cycle(agent, now)

    assert partitioned["proposals"], partitioned
    assert partitioned == plain


def test_partitions_command__lists_weeks_with_their_rows(capsys: Any) -> None:
    call_command("partitions", "--list")
    out = capsys.readouterr().out
    assert f"{partition_name(week_of(timezone.now()))}  week of {week_of(timezone.now()):%Y-%m-%d}  0 decisions" in out
    assert f"{DEFAULT_PARTITION}  default" in out
