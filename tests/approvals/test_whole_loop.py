"""The whole loop on PostgreSQL: decisions and responses through the API, ``run_tuner``, an approver told by
email accepting in Chromium, the agent's next config read, worse responses, ``run_watchdog`` rolling the
change back, and the audit trail telling it in order."""

import io
import json
import random
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from tests.approvals.conftest import iso, sign_in
from tests.factories import make_agent, user_with_role
from tests.tuner.helpers import action_for
from tuner.models import Proposal


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def log_and_respond(agent: Any, agent_api: APIClient, reviewer_api: APIClient, rows: list[dict[str, Any]]) -> int:
    """POST the decisions as a batch, then each queued one's response as the reviewer. Returns responses."""
    entries = []
    for row in rows:
        entries.append(
            {
                "id": row["id"],
                "timestamp": iso(row["at"]),
                "agentId": agent.agent_id,
                "sessionId": "loop",
                "decision": {
                    "action": action_for(agent, row["confidence"]),
                    "confidence": row["confidence"],
                    "thresholdUsed": 0.0,
                    "reasoning": "score",
                },
                "context": {"inputHash": row["id"], "features": row["features"], "matchedRules": []},
            }
        )
    response = agent_api.post("/api/v1/decisions/batch", {"entries": entries}, format="json")
    assert response.status_code == 200 and {r["status"] for r in response.json()["results"]} == {"created"}
    responded = 0
    for row in rows:
        stored = agent_api.get(f"/api/v1/decisions/{row['id']}").json()
        if not stored["queuedForReview"]:
            continue
        body: dict[str, Any] = {"action": row["response"]}
        if "respondedAt" in row:
            body["respondedAt"] = iso(row["respondedAt"])
        answer = reviewer_api.post(f"/api/v1/decisions/{row['id']}/response", body, format="json")
        assert answer.status_code == 201, answer.json()
        responded += 1
    return responded


def history(now: datetime) -> list[dict[str, Any]]:
    """Four weeks in which reviewers dismiss every flag under 0.7 (those fire at night)."""
    rnd = random.Random(7)
    rows = []
    n = 400
    span = timedelta(weeks=4) - timedelta(hours=3)
    for i in range(n):
        at = now - span + span * (i / (n - 1)) - timedelta(hours=2)
        c = round(rnd.uniform(0.4, 0.95), 4)
        false_alarm = 0.6 <= c < 0.7
        rows.append(
            {
                "id": f"hist-{i:04d}",
                "at": at,
                "respondedAt": at + timedelta(hours=1),
                "confidence": c,
                "response": "dismiss" if false_alarm else "approve",
                "features": {"night": 1.0 if false_alarm else 0.0, "amount": round(rnd.uniform(10, 500), 2)},
            }
        )
    return rows


@pytest.mark.configured
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_whole_loop__tune_accept_in_browser_worse_then_watchdog_rolls_back(browser_context, live_server, mailoutbox):
    start = timezone.now()
    agent, key = make_agent(now=start - timedelta(weeks=6))
    alice = user_with_role("approver", username="alice")
    agent.approvers.add(alice)
    rita = user_with_role("reviewer", username="rita")
    agent_api, reviewer_api = bearer(key), APIClient()
    reviewer_api.force_authenticate(user=rita)

    # 1. Four weeks of decisions and responses, through the API.
    assert log_and_respond(agent, agent_api, reviewer_api, history(start)) > 200
    first_read = agent_api.get("/api/v1/agents/triage/config")
    assert first_read.json()["version"] == 1

    # 2. The weekly cycle proposes raising flag_threshold; the approver is told by email.
    out = io.StringIO()
    call_command("run_tuner", "triage", "--now", iso(start), stdout=out)
    output = json.loads(out.getvalue())
    (proposed,) = [p for p in output["proposals"] if p["thresholdName"] == "flag_threshold"]
    assert proposed["direction"] == "increase" and proposed["currentValue"] == 0.6
    proposal = Proposal.objects.get(agent=agent, threshold_name="flag_threshold", status="pending")
    (told,) = [m for m in mailoutbox if "to decide" in m.subject]
    assert told.to == ["alice@example.com"]
    link = re.search(r"https?://\S+/proposals/(\d+)/", told.body)
    assert link is not None and int(link.group(1)) == proposal.pk

    # 3. She opens the link in Chromium and accepts.
    sign_in(browser_context, live_server, alice)
    page = browser_context.new_page()
    page.goto(f"/proposals/{proposal.pk}/")
    page.get_by_test_id("sample-entry").first.locator("summary").click()
    page.locator("textarea[name=rationale]").fill("night-time flags under 0.7 are noise")
    page.get_by_role("button", name="Record decision").click()
    new_value = proposal.proposed_value
    page.get_by_text(f"Accepted: flag_threshold is {new_value:g} in v2, live now.").wait_for()

    # 4. The agent's next read has the new version and a new ETag.
    second_read = agent_api.get("/api/v1/agents/triage/config", HTTP_IF_NONE_MATCH=first_read["ETag"])
    assert second_read.status_code == 200 and second_read["ETag"] != first_read["ETag"]
    assert second_read.json()["version"] == 2 and second_read.json()["thresholds"]["flag_threshold"] == new_value

    # 5. Under the new version things get worse: reviewers escalate or dismiss 40 of 60 flags.
    accepted_at = timezone.now()
    worse = [
        {
            "id": f"after-{i:03d}",
            "at": accepted_at + timedelta(seconds=i),
            "respondedAt": accepted_at + timedelta(seconds=i + 1),
            "confidence": 0.9,
            "response": "approve" if i % 3 == 0 else "escalate" if i % 3 == 1 else "dismiss",
            "features": {"night": 0.0, "amount": 100.0},
        }
        for i in range(60)
    ]
    assert log_and_respond(agent, agent_api, reviewer_api, worse) == 60

    # 6. The watchdog rolls it back and says so; the approver gets the figures.
    out = io.StringIO()
    call_command("run_watchdog", "--now", iso(timezone.now() + timedelta(minutes=6)), stdout=out)
    assert "rolled back triage v2 -> v3" in out.getvalue()
    third_read = agent_api.get("/api/v1/agents/triage/config", HTTP_IF_NONE_MATCH=second_read["ETag"])
    assert third_read.json()["version"] == 3 and third_read.json()["thresholds"]["flag_threshold"] == 0.6
    proposal.refresh_from_db()
    assert proposal.status == "rolled_back"
    (rollback_mail,) = [m for m in mailoutbox if "rolled back" in m.subject]
    assert rollback_mail.to == ["alice@example.com"] and "errors 40" in rollback_mail.body

    # 7. The audit trail tells the story in order, on the API and on the page.
    trail = APIClient()
    trail.force_authenticate(user=alice)
    kinds = [e["kind"] for e in trail.get("/api/v1/audit?agentId=triage&threshold=flag_threshold").json()["results"]]
    assert kinds[kinds.index("proposal.created") :] == [
        "proposal.created",
        "proposal.accepted",
        "config.activated",
        "config.rolled_back",
    ]
    page.goto("/audit/?agent=triage&threshold=flag_threshold")
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    assert "config.rolled_back" in rows.first.inner_text() and "watchdog" in rows.first.inner_text()
