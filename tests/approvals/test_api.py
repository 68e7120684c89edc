from datetime import timedelta

import pytest

from approvals.services import proposal_decide
from tests.approvals.conftest import log_responded
from tests.conftest import client_for
from tests.factories import NOW, make_agent, make_proposal
from thresholds.selectors import config_get_live


@pytest.mark.django_db
def test_get_proposals__approver__listed_with_live_value_and_status_filter(agent, approver):
    pending = make_proposal(agent, proposed=0.66)
    decided = make_proposal(agent, threshold="escalate_threshold", proposed=0.8)
    proposal_decide(proposal=decided, actor=approver, decision="reject", rationale="no", now=NOW)

    response = client_for(approver).get(f"/api/v1/agents/{agent.agent_id}/proposals?status=pending")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [pending.pk]
    assert results[0]["thresholdName"] == "flag_threshold"
    assert results[0]["currentValue"] == 0.6 and results[0]["liveValue"] == 0.6 and results[0]["proposedValue"] == 0.66
    all_rows = client_for(approver).get(f"/api/v1/agents/{agent.agent_id}/proposals").json()["results"]
    assert {r["status"] for r in all_rows} == {"pending", "rejected"}


@pytest.mark.django_db
def test_get_proposals__reviewer_or_agent_key__forbidden(agent, agent_client, reviewer):
    make_proposal(agent)

    assert client_for(reviewer).get(f"/api/v1/agents/{agent.agent_id}/proposals").status_code == 403
    assert agent_client.get(f"/api/v1/agents/{agent.agent_id}/proposals").status_code == 403


@pytest.mark.django_db
def test_get_proposal__evidence_entries_in_the_seed_shape(agent, approver):
    ids = log_responded(agent, prefix="ev", n=6, errors=6, start=NOW - timedelta(days=2))
    proposal = make_proposal(agent, evidence_ids=ids)

    body = client_for(approver).get(f"/api/v1/proposals/{proposal.pk}").json()

    assert body["evidenceCount"] == 6 and len(body["evidence"]) == 6
    first = body["evidence"][0]
    assert first["entryId"] == "ev-0000" and first["kind"] == "dismiss"
    assert first["entry"]["humanResponse"]["action"] == "dismiss"
    assert first["entry"]["context"]["features"] == {"amount_z": 3.2, "night": 1.0}
    assert [e["id"] for e in body["sampleEntries"]] == ids[:5]


@pytest.mark.django_db
def test_get_proposal__evidence_ids_another_agent_also_uses__the_proposals_agents_entries(agent, approver):
    ids = log_responded(agent, prefix="ev", n=6, errors=6, start=NOW - timedelta(days=2))
    other, _ = make_agent("fraud")
    # Ids are unique per agent: fraud's entries with the same ids are not the proposal's evidence.
    log_responded(other, prefix="ev", n=6, errors=0, start=NOW - timedelta(days=1))
    proposal = make_proposal(agent, evidence_ids=ids)

    body = client_for(approver).get(f"/api/v1/proposals/{proposal.pk}").json()

    assert {e["entry"]["agentId"] for e in body["evidence"]} == {"triage"}
    assert {e["entry"]["humanResponse"]["action"] for e in body["evidence"]} == {"dismiss"}
    assert {e["agentId"] for e in body["sampleEntries"]} == {"triage"} and len(body["sampleEntries"]) == 5


@pytest.mark.django_db
def test_post_decision__accept__200_with_new_config_version(agent, approver):
    proposal = make_proposal(agent, proposed=0.66)

    response = client_for(approver).post(
        f"/api/v1/proposals/{proposal.pk}/decision", {"decision": "accept", "rationale": "clear"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "accepted" and response.json()["configVersion"] == 2
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.66


@pytest.mark.django_db
def test_post_decision__errors__mapped_to_status_and_message(agent, approver, approver2, reviewer):
    proposal = make_proposal(agent, proposed=0.66)
    url = f"/api/v1/proposals/{proposal.pk}/decision"

    no_rationale = client_for(approver).post(url, {"decision": "accept"}, format="json")
    assert no_rationale.status_code == 400 and no_rationale.json()["error"]["field"] == "rationale"

    too_far = client_for(approver).post(url, {"decision": "modify", "value": 0.9, "rationale": "x"}, format="json")
    assert too_far.status_code == 400 and "more than 20%" in too_far.json()["error"]["message"]

    by_reviewer = client_for(reviewer).post(url, {"decision": "accept", "rationale": "x"}, format="json")
    assert by_reviewer.status_code == 403

    assert client_for(approver).post(url, {"decision": "accept", "rationale": "ok"}, format="json").status_code == 200
    second = client_for(approver2).post(url, {"decision": "reject", "rationale": "no"}, format="json")
    assert second.status_code == 409
    assert "already decided by alice" in second.json()["error"]["message"]

    missing = client_for(approver).post("/api/v1/proposals/999999/decision", {"decision": "accept"}, format="json")
    assert missing.status_code in (400, 404)
