"""Retention (auditlog.retention): weeks older than the retention period are archived to a file per week and
removed, cited decisions are kept in the evidence table first so every citation still resolves, the audit trail
is untouched, and an archived week can be restored with its ids."""

import csv
import gzip
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.audit import audit_record
from approvals.chain import chain_verify
from approvals.models import AuditEvent
from auditlog.models import Decision, DecisionKey, EvidenceDecision
from auditlog.partitions import partition_name, partitions_list, week_of
from auditlog.retention import WeekPresent, retention_run, week_restore
from auditlog.services import decision_log
from people.roles import Role
from tests.factories import entry, make_agent, make_proposal, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def weeks_ago() -> Any:
    """Decisions logged at 20, 10 and 1 week(s) before now; ids old-0/old-1 (20 weeks), mid-0 (10), new-0 (1)."""
    now = timezone.now().replace(microsecond=0)
    agent, _ = make_agent(now=now - timedelta(weeks=30))
    made = {"old-0": 20, "old-1": 20, "mid-0": 10, "new-0": 1}
    for entry_id, weeks in made.items():
        status, _ = decision_log(raw=entry(id=entry_id, timestamp=(now - timedelta(weeks=weeks)).isoformat()), now=now)
        assert status == "created"
    return agent, now


def _archived_ids(path: Path) -> list[str]:
    with gzip.open(path, "rt", newline="") as text:
        return [row["entry_id"] for row in csv.DictReader(text)]


def test_retention__old_weeks_archived_and_removed__cited_one_kept_and_still_resolves(
    weeks_ago: Any, tmp_path: Path
) -> None:
    agent, now = weeks_ago
    proposal = make_proposal(agent, evidence_ids=["old-0"], now=now)
    audit_record(
        kind=AuditEvent.Kind.PROPOSAL_CREATED,
        agent=agent,
        at=now,
        actor_label="tuner",
        proposal=proposal,
        evidence_entry_ids=["old-0", "mid-0"],
    )
    audit_before = list(AuditEvent.objects.values_list("id", "hash"))

    done = retention_run(now=now, weeks=4, folder=tmp_path)

    archived = {w.week: w for w in done if w.rows}
    assert set(archived) == {week_of(now - timedelta(weeks=20)), week_of(now - timedelta(weeks=10))}
    old = archived[week_of(now - timedelta(weeks=20))]
    assert (old.rows, old.kept_as_evidence) == (2, 1)
    assert old.path is not None and sorted(_archived_ids(old.path)) == ["old-0", "old-1"]
    assert set(Decision.objects.values_list("entry_id", flat=True)) == {"new-0"}
    assert set(DecisionKey.objects.values_list("entry_id", flat=True)) == {"new-0"}
    assert set(EvidenceDecision.objects.values_list("entry_id", flat=True)) == {"old-0", "mid-0"}
    # The audit trail is whole and still chains; every id it cites still opens.
    assert list(AuditEvent.objects.values_list("id", "hash")) == audit_before
    assert all(report.broken is None for report in chain_verify([agent.agent_id]))
    client = APIClient()
    client.force_authenticate(user_with_role(Role.REVIEWER))
    for cited in ("old-0", "mid-0"):
        response = client.get(f"/api/v1/decisions/{cited}")
        assert response.status_code == 200, response.content
        assert response.json()["id"] == cited and response.json()["decision"]["action"] == "flag"
    assert client.get("/api/v1/decisions/old-1").status_code == 404
    client.force_login(user_with_role(Role.REVIEWER, username="rita"))
    page = client.get("/decisions/old-0/")
    assert page.status_code == 200 and "archived" in page.content.decode()


@pytest.mark.configured
def test_retention__postgresql__drops_the_old_weeks_partitions(weeks_ago: Any, tmp_path: Path) -> None:
    _, now = weeks_ago
    before = {p.week for p in partitions_list()}
    assert week_of(now - timedelta(weeks=10)) in before

    retention_run(now=now, weeks=4, folder=tmp_path)

    left = {p.week for p in partitions_list()}
    assert min(left) == week_of(now) - timedelta(weeks=3)
    assert partition_name(week_of(now)) in {p.name for p in partitions_list()}


def test_retention__dry_run_changes_nothing(weeks_ago: Any, tmp_path: Path) -> None:
    _, now = weeks_ago
    done = retention_run(now=now, weeks=4, folder=tmp_path, dry_run=True)
    assert sum(w.rows for w in done) == 3
    assert Decision.objects.count() == 4 and DecisionKey.objects.count() == 4
    assert not list(tmp_path.iterdir())


def test_restore__week_comes_back_with_its_ids__twice_refused(weeks_ago: Any, tmp_path: Path) -> None:
    _, now = weeks_ago
    retention_run(now=now, weeks=4, folder=tmp_path)
    week = week_of(now - timedelta(weeks=20))
    original = entry(id="old-1", timestamp=(now - timedelta(weeks=20)).isoformat())

    assert week_restore(week, folder=tmp_path) == 2

    assert set(Decision.objects.values_list("entry_id", flat=True)) == {"new-0", "old-0", "old-1"}
    restored = Decision.objects.get(entry_id="old-1")
    assert restored.action == "flag" and restored.features == {"amount_z": 3.2, "night": 1.0}
    assert restored.reasoning == "amount far above the customer's average" and restored.response_action is None
    assert decision_log(raw=original, now=now)[0] == "duplicate"  # the registry came back too
    with pytest.raises(WeekPresent):
        week_restore(week, folder=tmp_path)


def test_retention_command__archives_and_restore_week_command_restores(
    weeks_ago: Any, tmp_path: Path, capsys: Any
) -> None:
    _, now = weeks_ago
    call_command("retention", "--weeks", "4", "--archive-dir", str(tmp_path))
    out = capsys.readouterr().out
    week = week_of(now - timedelta(weeks=20))
    assert f"archived the week of {week:%Y-%m-%d}: 2 decisions to decisions-{week:%Y-%m-%d}.csv.gz" in out
    assert "archived" in out.splitlines()[-1] and "3 decisions" in out.splitlines()[-1]

    call_command("restore_week", f"{week + timedelta(days=3):%Y-%m-%d}", "--archive-dir", str(tmp_path))

    assert f"restored the week of {week:%Y-%m-%d}: 2 decisions" in capsys.readouterr().out
    assert Decision.objects.filter(entry_id__startswith="old-").count() == 2


def test_setup_periodic_tasks__partitions_daily_and_retention_weekly(db: None) -> None:
    from django_celery_beat.models import PeriodicTask

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    partitions = PeriodicTask.objects.get(name="decision partitions daily")
    assert partitions.task == "auditlog.partitions_ensure" and partitions.interval is not None
    assert (partitions.interval.every, partitions.interval.period) == (1, "days")
    retention = PeriodicTask.objects.get(name="decision retention weekly")
    assert retention.task == "auditlog.retention" and retention.crontab is not None
    assert (retention.crontab.hour, retention.crontab.minute, retention.crontab.day_of_week) == ("2", "30", "0")


def test_retention_task__archives_with_the_settings(weeks_ago: Any, tmp_path: Path, settings: Any) -> None:
    from auditlog.tasks import retention_task

    settings.DECISION_RETENTION_WEEKS, settings.DECISION_ARCHIVE_DIR = 4, tmp_path
    assert retention_task() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"decisions-{week_of(timezone.now() - timedelta(weeks=w)):%Y-%m-%d}.csv.gz" for w in (20, 10)
    )


def test_retention__late_rows_of_an_archived_week__second_file_and_restore_reads_both(
    weeks_ago: Any, tmp_path: Path
) -> None:
    agent, now = weeks_ago
    retention_run(now=now, weeks=4, folder=tmp_path)
    late = entry(id="old-late", timestamp=(now - timedelta(weeks=20) + timedelta(minutes=1)).isoformat())
    assert decision_log(raw=late, now=now)[0] == "created"

    retention_run(now=now, weeks=4, folder=tmp_path)

    week = week_of(now - timedelta(weeks=20))
    second = tmp_path / f"decisions-{week:%Y-%m-%d}.2.csv.gz"
    assert _archived_ids(second) == ["old-late"]
    assert week_restore(week, folder=tmp_path) == 3
    assert Decision.objects.filter(entry_id__startswith="old-").count() == 3


def test_restore_week__nothing_archived__says_so() -> None:
    with pytest.raises(CommandError, match="no archive of the week of 2026-03-02"):
        call_command("restore_week", "2026-03-04", "--archive-dir", "nowhere")
    with pytest.raises(CommandError, match="week must be a date"):
        call_command("restore_week", "last week")
