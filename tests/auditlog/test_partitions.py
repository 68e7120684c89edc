"""The decision log partitioned by week on PostgreSQL (auditlog.partitions): weeks made ahead, a default partition
that never refuses a row, rows moved into their week once it exists, reads pruned to the window's weeks, and the
tuner's output the same on the partitioned table as on a plain one."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from auditlog.models import Decision
from auditlog.partitions import (
    DEFAULT_PARTITION,
    is_partitioned,
    partition_name,
    partitions_ensure,
    partitions_list,
    table_convert,
    week_of,
)
from tests.factories import make_agent
from tests.tuner.helpers import log_rows, output
from tests.tuner.test_cycle import flag_too_low_rows
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
