"""The simulate command: the table printed, the files written, the run's agent replaced on a second run."""

import csv
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from auditlog.models import Decision
from thresholds.models import Agent

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


def test_simulate_command__same_agent_id_again__replaces_the_previous_run(tmp_path: Path) -> None:
    _simulate(tmp_path)
    _simulate(tmp_path)
    assert Agent.objects.filter(agent_id="sim-rules-3").count() == 1
    assert Decision.objects.filter(agent__agent_id="sim-rules-3").count() == 420


def test_simulate_command__bad_weeks__error() -> None:
    with pytest.raises(CommandError, match="--weeks"):
        call_command("simulate", weeks=0, no_progress=True)


def test_simulate_command__agent_id_of_a_real_agent__refused_and_kept(agent: Agent) -> None:
    with pytest.raises(CommandError, match="not a simulation agent"):
        call_command("simulate", agent_id="triage", weeks=1, per_day=10, no_progress=True)
    assert Agent.objects.filter(agent_id="triage").exists()
