"""The simulate command: the table printed, the files written, and a second run that deletes nothing."""

import csv
import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from approvals.models import AuditEvent
from approvals.services import proposal_decide
from auditlog.models import Decision
from tests.factories import NOW, make_agent, make_proposal
from thresholds.models import ConfigVersion

pytestmark = pytest.mark.django_db


def _simulate(tmp_path: Path) -> str:
    out = StringIO()
    call_command(
        "simulate",
        "--start=2026-01-05",
        scenario="rules",
        weeks=1,
        per_day=60,
        seed=3,
        out=tmp_path,
        no_progress=True,
        stdout=out,
    )
    return out.getvalue()


def test_simulate_command__writes_table_csv_json_and_chart(tmp_path: Path) -> None:
    text = _simulate(tmp_path)
    assert "agent sim-rules-3, seed 3, 60/day from 2026-01-05" in text
    assert "amount_rule" in text and "true miss" in text
    with (tmp_path / "weekly.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["week"] == "1" and row["decisions"] == "420" and row["threshold:amount_rule"] == "0.4"
    body = json.loads((tmp_path / "weekly.json").read_text())
    assert body["scenario"] == "rules" and body["weeks"][0]["weekStart"] == "2026-01-05"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_simulate_command__second_run__a_new_agent_beside_the_first(tmp_path: Path) -> None:
    """Nothing of the first run is deleted: the audit trail is append-only for every agent."""
    _simulate(tmp_path)
    first_audit = AuditEvent.objects.filter(agent__agent_id="sim-rules-3").count()
    text = _simulate(tmp_path)
    assert "agent sim-rules-3-2, seed 3" in text
    assert Decision.objects.filter(agent__agent_id="sim-rules-3").count() == 420
    assert Decision.objects.filter(agent__agent_id="sim-rules-3-2").count() == 420
    assert AuditEvent.objects.filter(agent__agent_id="sim-rules-3").count() == first_audit


def test_simulate_command__bad_weeks__error() -> None:
    with pytest.raises(CommandError, match="--weeks"):
        call_command("simulate", weeks=0, no_progress=True)


@pytest.mark.parametrize("agent_id", ["triage", "demo-prod", "sim-rules-3"])
def test_simulate_command__agent_id_that_exists__refused_and_its_trail_kept(agent_id: str, approver: Any) -> None:
    """The reproduction: an agent named demo-prod had its trail deleted by a simulation's purge."""
    existing, _ = make_agent(agent_id)
    proposal_decide(proposal=make_proposal(existing), actor=approver, decision="reject", rationale="kept", now=NOW)

    with pytest.raises(CommandError, match=f"agent '{agent_id}' exists, and a simulation never writes over"):
        call_command("simulate", agent_id=agent_id, weeks=1, per_day=10, no_progress=True)

    assert AuditEvent.objects.filter(agent=existing).count() == 1
    assert ConfigVersion.objects.filter(agent=existing).count() == 1


def test_simulate_command__bad_database_name__refused() -> None:
    with pytest.raises(CommandError, match="--database 'public'"):
        call_command("simulate", database="public", weeks=1, per_day=10, no_progress=True)
    with pytest.raises(CommandError, match="--database '../x'"):
        call_command("simulate", database="../x", weeks=1, per_day=10, no_progress=True)
