import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from auditlog.models import Decision
from tests.api.conftest import rows
from tests.conftest import client_for
from tests.factories import entry, make_agent

URL = "/api/v1/decisions"

# The seed's ActionLogEntry, every field filled, as an agent importing a reviewed decision sends it.
SEED_ENTRY: dict[str, Any] = {
    "id": "act_2026-03-02_000187",
    "timestamp": "2026-03-02T07:41:09.250000+01:00",
    "agentId": "triage",
    "sessionId": "run-8841",
    "decision": {
        "action": "escalate",
        "confidence": 0.91,
        "thresholdUsed": 0.85,
        "reasoning": "chargeback pattern matches two prior fraud cases",
    },
    "context": {
        "inputHash": "sha256:9f2c1e",
        "features": {"amount_z": 3.4, "account_age_days": 12.0, "velocity_1h": 7.0},
        "matchedRules": ["high_velocity", "new_account"],
    },
    "humanResponse": {
        "action": "modify",
        "respondedAt": "2026-03-02T08:11:09.250000+01:00",
        "responderId": "rita",
        "modifiedAction": "flag",
        "note": "suspicious but not block-worthy",
        "timeToRespond": 1800,
    },
}


def post(client: APIClient, body: Any, url: str = URL) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_post_decision__seed_shape__stored_and_read_back_field_for_field(agent_client):
    created = post(agent_client, SEED_ENTRY)
    assert created.status_code == 201, created.content
    got = agent_client.get(f"{URL}/{SEED_ENTRY['id']}").json()
    for body in (created.json(), got):
        assert body["id"] == SEED_ENTRY["id"]
        assert body["timestamp"] == "2026-03-02T06:41:09.250000Z"  # the same instant, in UTC
        assert body["agentId"] == "triage"
        assert body["sessionId"] == "run-8841"
        assert body["decision"] == {**SEED_ENTRY["decision"], "thresholdName": "escalate_threshold"}
        assert body["context"] == SEED_ENTRY["context"]
        response = body["humanResponse"]
        assert response["action"] == "modify"
        assert response["respondedAt"] == "2026-03-02T07:11:09.250000Z"
        assert response["responderId"] == "rita"
        assert response["modifiedAction"] == "flag"
        assert response["note"] == "suspicious but not block-worthy"
        assert response["timeToRespond"] == 1800
        assert body["configVersion"] == 1
        assert body["queuedForReview"] is True


@pytest.mark.django_db
def test_post_decision__no_id__server_makes_one(agent_client):
    body = entry()
    del body["id"]
    response = post(agent_client, body)
    assert response.status_code == 201
    assert len(response.json()["id"]) == 36
    assert Decision.objects.get().entry_id == response.json()["id"]


@pytest.mark.django_db
def test_post_decision__same_id_same_content__200_same_entry(agent_client):
    body = entry(id="d-1")
    first = post(agent_client, body)
    again = post(agent_client, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert rows() == (1, 1)


@pytest.mark.django_db
def test_post_decision__same_id_other_content__409_first_stands(agent_client):
    post(agent_client, entry(id="d-1"))
    response = post(agent_client, entry(id="d-1", decision={"confidence": 0.99}))
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "id"
    assert rows() == (1, 1)
    assert Decision.objects.get().confidence == 0.72


@pytest.mark.django_db
def test_post_decision__human_user__403_nothing_written(agent, admin_user):
    response = post(client_for(admin_user), entry())
    assert response.status_code == 403
    assert rows() == (0, 0)


@pytest.mark.django_db
def test_post_decision__no_key__401(agent):
    assert post(APIClient(), entry()).status_code == 401
    assert rows() == (0, 0)


# --- Batch --------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_batch__mixed_entries__one_result_each_in_order_valid_ones_stored(agent_client):
    post(agent_client, entry(id="old"))
    entries = [
        entry(id="new-1"),
        entry(id="bad", decision={"confidence": 1.5}),
        entry(id="old"),
        entry(id="old", sessionId="changed"),
        entry(id="new-2", decision={"action": "auto-resolve", "confidence": 0.2, "thresholdUsed": 0.6}),
        "not an object",
    ]
    response = post(agent_client, {"entries": entries}, URL + "/batch")
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": "new-1", "status": "created"},
        {
            "id": "bad",
            "status": "invalid",
            "errors": {"decision.confidence": "decision.confidence must be between 0 and 1"},
        },
        {"id": "old", "status": "duplicate"},
        {"id": "old", "status": "conflict", "errors": {"id": "repeated in this batch with other content"}},
        {"id": "new-2", "status": "created"},
        {"id": None, "status": "invalid", "errors": {"entry": "entry must be an object"}},
    ]
    assert set(Decision.objects.values_list("entry_id", flat=True)) == {"old", "new-1", "new-2"}
    assert rows() == (3, 3)


@pytest.mark.django_db
def test_batch__other_agents_entry__invalid_rest_stored(agent, agent_client):
    make_agent("fraud")
    response = post(agent_client, {"entries": [entry(id="a"), entry("fraud", id="b")]}, URL + "/batch")
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "invalid"]
    assert "agentId" in results[1]["errors"]
    assert list(Decision.objects.values_list("entry_id", flat=True)) == ["a"]


@pytest.mark.django_db
def test_batch__more_than_1000_entries__400_nothing_written(agent_client):
    response = post(agent_client, {"entries": [entry() for _ in range(1001)]}, URL + "/batch")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "entries"
    assert rows() == (0, 0)


@pytest.mark.django_db
def test_batch__entries_not_a_list__400(agent_client):
    response = post(agent_client, {"entries": {"id": "x"}}, URL + "/batch")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "entries"


@pytest.mark.django_db
def test_batch__body_over_10_mib__413_nothing_written(agent_client):
    body = json.dumps({"entries": [entry(decision={"reasoning": "x" * 3000})], "pad": "y" * (10 * 1024 * 1024)})
    response = agent_client.post(URL + "/batch", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "body"
    assert rows() == (0, 0)


@pytest.mark.django_db
def test_batch__stored_entries__read_back_as_sent(agent_client):
    response = post(agent_client, {"entries": [SEED_ENTRY, entry(id="plain")]}, URL + "/batch")
    assert [r["status"] for r in response.json()["results"]] == ["created", "created"]
    got = agent_client.get(f"{URL}/{SEED_ENTRY['id']}").json()
    assert got["context"] == SEED_ENTRY["context"]
    assert got["decision"] == {**SEED_ENTRY["decision"], "thresholdName": "escalate_threshold"}
    assert got["humanResponse"]["modifiedAction"] == "flag"
    assert got["humanResponse"]["timeToRespond"] == 1800
    assert got["timestamp"] == "2026-03-02T06:41:09.250000Z"
    assert agent_client.get(f"{URL}/plain").json()["context"]["matchedRules"] == ["high_amount"]


@pytest.mark.django_db
def test_batch__id_stored_by_another_request_meanwhile__duplicate_others_created(agent_client, monkeypatch):
    from auditlog import services

    # Another request stores "b" after this batch looked its ids up in the registry.
    post(agent_client, entry(id="b"))
    monkeypatch.setattr(services, "_known_hashes", lambda entry_ids: {})
    response = post(agent_client, {"entries": [entry(id="a"), entry(id="b"), entry(id="c")]}, URL + "/batch")
    assert response.status_code == 200
    assert [(r["id"], r["status"]) for r in response.json()["results"]] == [
        ("a", "created"),
        ("b", "duplicate"),
        ("c", "created"),
    ]
    assert rows() == (3, 3)
