import pytest
from rest_framework.test import APIClient

from tests.api.conftest import bearer
from tests.conftest import client_for
from tests.factories import NOW, make_agent
from thresholds.services import config_version_activate

URL = "/api/v1/agents/triage/config"


@pytest.mark.django_db
def test_config__agent_key__live_thresholds_with_etag(agent_client):
    response = agent_client.get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "agentId": "triage",
        "version": 1,
        "activatedAt": "2026-03-02T09:00:00Z",
        "thresholds": {"flag_threshold": 0.6, "escalate_threshold": 0.85},
    }
    assert response["ETag"] == '"triage-v1"'


@pytest.mark.django_db
def test_config__if_none_match_current__304_then_new_version__200(agent, agent_client):
    etag = agent_client.get(URL)["ETag"]
    unchanged = agent_client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged["ETag"] == etag

    config_version_activate(
        agent=agent, values={"flag_threshold": 0.65, "escalate_threshold": 0.85}, source="manual", now=NOW
    )
    changed = agent_client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert changed.json()["thresholds"]["flag_threshold"] == 0.65
    assert changed["ETag"] != etag


@pytest.mark.django_db
def test_config__weak_etag_in_a_list__304(agent_client):
    assert agent_client.get(URL, HTTP_IF_NONE_MATCH='"other", W/"triage-v1"').status_code == 304


@pytest.mark.django_db
def test_config_versions__after_two_changes__every_version_newest_first(agent, agent_client, approver):
    config_version_activate(
        agent=agent,
        values={"flag_threshold": 0.65, "escalate_threshold": 0.85},
        source="manual",
        now=NOW,
        reason="too many false flags",
        approved_by=approver,
    )
    v2 = agent.config_versions.get(number=2)
    config_version_activate(
        agent=agent,
        values={"flag_threshold": 0.6, "escalate_threshold": 0.85},
        source="rollback",
        now=NOW,
        reason="watchdog",
        rolled_back_version=v2,
    )
    response = agent_client.get(URL + "/versions")
    assert response.status_code == 200
    body = response.json()
    assert body["agentId"] == "triage"
    assert [v["version"] for v in body["results"]] == [3, 2, 1]
    newest, middle, first = body["results"]
    assert newest["source"] == "rollback" and newest["rolledBackVersion"] == 2 and newest["isLive"] is True
    assert middle == {
        "version": 2,
        "values": {"flag_threshold": 0.65, "escalate_threshold": 0.85},
        "source": "manual",
        "proposalId": None,
        "approvedBy": "alice",
        "reason": "too many false flags",
        "activatedAt": "2026-03-02T09:00:00Z",
        "supersededAt": "2026-03-02T09:00:00Z",
        "isLive": False,
        "rolledBackVersion": None,
    }
    assert first["source"] == "initial" and first["approvedBy"] is None


@pytest.mark.django_db
def test_config__another_agents_key__403(agent):
    _, other_key = make_agent("fraud")
    client = bearer(APIClient(), other_key)
    for url in (URL, URL + "/versions"):
        response = client.get(url)
        assert response.status_code == 403
        assert response.json()["error"]["field"] == "agentId"


@pytest.mark.django_db
def test_config__unknown_agent__404(agent_client):
    for url in ("/api/v1/agents/nobody/config", "/api/v1/agents/nobody/config/versions"):
        response = agent_client.get(url)
        assert response.status_code == 404
        assert response.json()["error"]["field"] == "agentId"


@pytest.mark.django_db
def test_config__staff_reads__reviewer_and_anonymous_refused(agent, admin_user, reviewer):
    assert client_for(admin_user).get(URL).status_code == 200
    assert client_for(admin_user).get(URL + "/versions").status_code == 200
    assert client_for(reviewer).get(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401
