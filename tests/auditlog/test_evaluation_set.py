"""An evaluation set from the team's own verdicts: reviewed decisions with their current label (CSV, JSON Lines)."""

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from auditlog.services import response_record
from tests.conftest import client_for
from tests.web.conftest import log_pending

pytestmark = pytest.mark.django_db


def body(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def verdicts(agent: Any) -> list[str]:
    """Four decisions (flag): dismissed, modified to escalate (label escalate), approved, and one unanswered."""
    now = timezone.now()
    ids = log_pending(agent.agent_id, 4, minutes_apart=60)
    answers = [{"action": "dismiss", "note": "noise"}, {"action": "modify", "modifiedAction": "escalate"}]
    answers.append({"action": "approve"})
    for entry_id, raw in zip(ids, answers, strict=False):
        response_record(entry_id=entry_id, raw={**raw, "respondedAt": now.isoformat()}, responder_id="kim", now=now)
    return ids


def test_evaluation_set__jsonl__reviewed_only_oldest_first_with_the_label(agent, reviewer, verdicts):
    response = client_for(reviewer).get(f"/api/v1/agents/{agent.agent_id}/evaluation-set.jsonl")

    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == f'attachment; filename="evaluation-{agent.agent_id}.jsonl"'
    rows = [json.loads(line) for line in body(response).splitlines()]
    assert [(r["id"], r["label"], r["responseAction"]) for r in rows] == [
        (verdicts[0], "dismiss", "dismiss"),
        (verdicts[1], "escalate", "modify"),
        (verdicts[2], "approve", "approve"),
    ]
    assert rows[0]["note"] == "noise" and rows[0]["responderId"] == "kim" and rows[0]["configVersion"] == 1


def test_evaluation_set__csv_with_a_date_range__header_and_rows(agent, approver, verdicts):
    first = timezone.now() - timedelta(minutes=210)  # after the first decision (4 h ago), before the second (3 h)
    url = f"/api/v1/agents/{agent.agent_id}/evaluation-set.csv"

    response = client_for(approver).get(url, {"from": first.isoformat()})

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [(r["id"], r["label"]) for r in rows] == [(verdicts[1], "escalate"), (verdicts[2], "approve")]
    assert json.loads(rows[0]["features"]) is not None and rows[0]["modifiedAction"] == "escalate"


def test_evaluation_set__nothing_reviewed__csv_is_the_header_alone(agent, reviewer):
    response = client_for(reviewer).get(f"/api/v1/agents/{agent.agent_id}/evaluation-set.csv")
    assert body(response).strip().startswith("id,agentId,timestamp,action")


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [("triage/evaluation-set.xml", 404, "fmt"), ("nobody/evaluation-set.csv", 404, "agentId")],
)
def test_evaluation_set__unknown_format_or_agent__404_naming_it(agent, reviewer, path, status, field):
    response = client_for(reviewer).get(f"/api/v1/agents/{path}")
    assert response.status_code == status and response.json()["error"]["field"] == field


def test_evaluation_set__agent_key__403(agent_client, agent):
    assert agent_client.get(f"/api/v1/agents/{agent.agent_id}/evaluation-set.csv").status_code == 403


def test_admin_action__selected_decisions__csv_of_the_reviewed_ones(admin_client, agent, verdicts):
    from auditlog.models import Decision

    selected = list(Decision.objects.filter(entry_id__in=verdicts[1:]).values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/auditlog/decision/", {"action": "export_evaluation_csv", "_selected_action": selected}
    )

    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [(r["id"], r["label"]) for r in rows] == [(verdicts[1], "escalate"), (verdicts[2], "approve")]
