"""Lineage (issue 10): a decision is stored with the version it was made under, not the one live at upload.

The reproduction: a decision stamped two days ago, posted after v2 went live, was stored as configVersion 2
although its thresholdUsed was v1's.
"""

from datetime import timedelta

import pytest

from approvals.services import proposal_decide
from tests.approvals.conftest import iso
from tests.factories import NOW, entry, make_proposal
from thresholds.models import ConfigVersion


@pytest.fixture
def v2(agent, approver):
    """flag_threshold 0.6 (v1, live since NOW - 3 days) -> 0.66 (v2, live from NOW - 1 day); the API's clock is NOW."""
    ConfigVersion.objects.filter(agent=agent, number=1).update(activated_at=NOW - timedelta(days=3))
    proposal = make_proposal(agent, proposed=0.66)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="ok", now=NOW - timedelta(days=1))
    return ConfigVersion.objects.get(agent=agent, number=2)


def _post(agent_client, **overrides):
    return agent_client.post("/api/v1/decisions", entry(**overrides), format="json")


@pytest.mark.django_db
def test_a_late_upload_keeps_the_version_live_at_its_timestamp(agent_client, v2):
    stamped = iso(NOW - timedelta(days=2))  # under v1, uploaded after v2 went live

    response = _post(agent_client, timestamp=stamped)

    assert response.status_code == 201, response.content
    assert response.json()["configVersion"] == 1
    assert agent_client.get(f"/api/v1/decisions/{response.json()['id']}").json()["configVersion"] == 1
    after = _post(agent_client, timestamp=iso(v2.activated_at + timedelta(seconds=1)), decision={"thresholdUsed": 0.66})
    assert after.json()["configVersion"] == 2


@pytest.mark.django_db
def test_config_version_sent__stored_as_sent(agent_client, v2):
    response = _post(agent_client, timestamp=iso(v2.activated_at - timedelta(hours=1)), configVersion=1)

    assert response.status_code == 201 and response.json()["configVersion"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"configVersion": 7}, "configVersion 7 is not a version of triage (1 to 2)"),
        ({"configVersion": 2}, "configVersion 2 has flag_threshold = 0.66, but decision.thresholdUsed is 0.6"),
        ({"configVersion": 0}, "configVersion must be a version number"),
        ({"configVersion": "1"}, "configVersion must be a version number"),
        ({"configVersion": True}, "configVersion must be a version number"),
    ],
)
def test_config_version_wrong__400_naming_it_nothing_stored(agent_client, v2, overrides, message):
    response = _post(agent_client, timestamp=iso(NOW - timedelta(hours=1)), **overrides)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "configVersion" and message in error["message"]
    assert not agent_client.get("/api/v1/decisions?agentId=triage").json()["results"]


@pytest.mark.django_db
def test_batch__each_entry_gets_its_own_version_a_bad_one_is_invalid_in_its_slot(agent_client, v2):
    entries = [
        entry(id="old", timestamp=iso(NOW - timedelta(days=2))),
        entry(id="new", timestamp=iso(NOW - timedelta(hours=1)), decision={"thresholdUsed": 0.66}),
        entry(id="wrong", timestamp=iso(NOW - timedelta(hours=1)), configVersion=2),
        entry(id="named", timestamp=iso(NOW - timedelta(hours=1)), configVersion=1),
    ]

    results = agent_client.post("/api/v1/decisions/batch", {"entries": entries}, format="json").json()["results"]

    assert [r["status"] for r in results] == ["created", "created", "invalid", "created"]
    assert "configVersion" in results[2]["errors"]
    versions = {i: agent_client.get(f"/api/v1/decisions/{i}").json()["configVersion"] for i in ("old", "new", "named")}
    assert versions == {"old": 1, "new": 2, "named": 1}


@pytest.mark.django_db
def test_a_resend_with_the_version_it_was_stored_without__is_other_content(agent_client):
    body = entry(id="same")
    assert agent_client.post("/api/v1/decisions", body, format="json").status_code == 201
    assert agent_client.post("/api/v1/decisions", body, format="json").status_code == 200
    assert agent_client.post("/api/v1/decisions", {**body, "configVersion": 1}, format="json").status_code == 409
