"""``GET /api/v1/config``: the calling agent's live config, with what the client's decision rule needs."""

import pytest

from tests.conftest import client_for

URL = "/api/v1/config"


@pytest.mark.django_db
def test_own_config__agent_key__its_thresholds_actions_and_gated_actions_with_etag(agent_client):
    response = agent_client.get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "agentId": "triage",
        "version": 1,
        "activatedAt": "2026-03-02T09:00:00Z",
        "thresholds": {"flag_threshold": 0.6, "escalate_threshold": 0.85},
        "actions": ["auto-resolve", "flag", "escalate"],
        "gatedActions": {"flag_threshold": "flag", "escalate_threshold": "escalate"},
    }
    assert response["ETag"] == '"triage-v1"'
    assert agent_client.get(URL, HTTP_IF_NONE_MATCH='"triage-v1"').status_code == 304


@pytest.mark.django_db
def test_own_config__a_person__403_saying_where_to_read(admin_user):
    response = client_for(admin_user).get(URL)
    assert response.status_code == 403
    assert "/api/v1/agents/{agentId}/config" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_own_config__no_key__401(client):
    assert client.get(URL).status_code == 401
