import json
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from auditlog.services import decision_log, response_record
from people.keys import USER_KIND, key_generate
from people.models import PersonalToken
from tests.api.conftest import bearer
from tests.conftest import client_for
from tests.factories import NOW, UserFactory, entry, make_agent

URL = "/api/v1/decisions"


def log(agent_id: str = "triage", minutes_ago: int = 60, **overrides: Any) -> str:
    stamp = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    _, decision = decision_log(raw=entry(agent_id, timestamp=stamp, **overrides), now=NOW)
    return decision.entry_id


def all_pages(client: APIClient, query: str = "") -> list[list[str]]:
    pages, url = [], f"{URL}?{query}"
    for _ in range(100):
        body = client.get(url).json()
        pages.append([e["id"] for e in body["results"]])
        if body["next"] is None:
            return pages
        url = f"{URL}?{query}&cursor={body['next']}"
    raise AssertionError("pagination did not end")


# --- List and pagination ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list__cursor_pages__every_decision_once_newest_first(agent, agent_client):
    # Several decisions share a timestamp, so the order must fall back on the row sequence.
    ids = [log(minutes_ago=10 + i // 3, id=f"d-{i:02d}") for i in range(25)]
    pages = all_pages(agent_client, "limit=10")
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [i for page in pages for i in page]
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == set(ids)
    # Newest first: d-00..d-02 are 10 minutes old, the youngest.
    assert seen[:3] == ["d-02", "d-01", "d-00"]


@pytest.mark.django_db
def test_list__rows_arriving_between_pages__neither_repeated_nor_skipped(agent, agent_client):
    for i in range(6):
        log(minutes_ago=30 + i, id=f"old-{i}")
    first = agent_client.get(f"{URL}?limit=3").json()
    log(minutes_ago=1, id="newer")  # arrives while the client pages
    second = agent_client.get(f"{URL}?limit=3&cursor={first['next']}").json()
    assert [e["id"] for e in first["results"]] == ["old-0", "old-1", "old-2"]
    assert [e["id"] for e in second["results"]] == ["old-3", "old-4", "old-5"]


@pytest.mark.django_db
def test_list__filters__only_matching_decisions(agent, agent_client):
    log(minutes_ago=200, id="early-flag")
    log(minutes_ago=100, id="mid-auto", decision={"action": "auto-resolve", "confidence": 0.1})
    log(minutes_ago=50, id="late-flag")
    response_record(entry_id="late-flag", raw={"action": "dismiss"}, responder_id="rita", now=NOW)

    def ids(query: str) -> list[str]:
        return [e["id"] for e in agent_client.get(f"{URL}?{query}").json()["results"]]

    assert ids("action=flag") == ["late-flag", "early-flag"]
    assert ids("hasHumanResponse=true") == ["late-flag"]
    assert ids("hasHumanResponse=false") == ["mid-auto", "early-flag"]
    since, until = (NOW - timedelta(minutes=150)).isoformat(), (NOW - timedelta(minutes=50)).isoformat()
    assert ids(f"from={since.replace('+', '%2B')}&to={until.replace('+', '%2B')}") == ["mid-auto"]
    assert ids("agentId=triage&from=2026-03-02T05:00:00Z") == ["late-flag", "mid-auto", "early-flag"]


@pytest.mark.django_db
def test_list__agent_key__own_decisions_only_and_403_for_another(agent, agent_client):
    _, other_key = make_agent("fraud")
    log(id="mine")
    log("fraud", id="theirs")
    assert [e["id"] for e in agent_client.get(URL).json()["results"]] == ["mine"]
    response = agent_client.get(f"{URL}?agentId=fraud")
    assert response.status_code == 403
    assert response.json()["error"]["field"] == "agentId"
    assert [e["id"] for e in bearer(APIClient(), other_key).get(URL).json()["results"]] == ["theirs"]


@pytest.mark.django_db
def test_list__reviewer_and_staff_see_every_agent__others_refused(agent, reviewer, admin_user):
    make_agent("fraud")
    log(id="mine")
    log("fraud", id="theirs")
    for user in (reviewer, admin_user):
        assert {e["id"] for e in client_for(user).get(URL).json()["results"]} == {"mine", "theirs"}
        assert [e["id"] for e in client_for(user).get(f"{URL}?agentId=fraud").json()["results"]] == ["theirs"]
    assert client_for(UserFactory(username="nobody")).get(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401


@pytest.mark.django_db
def test_list__unknown_agent_filter__404(reviewer):
    response = client_for(reviewer).get(f"{URL}?agentId=ghost")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "agentId"


# --- One decision -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_detail__own_and_reviewer__entry_with_response(agent, agent_client, reviewer):
    log(id="d-1")
    response_record(entry_id="d-1", raw={"action": "approve"}, responder_id="rita", now=NOW)
    for client in (agent_client, client_for(reviewer)):
        body = client.get(f"{URL}/d-1").json()
        assert body["id"] == "d-1"
        assert body["humanResponse"] == {
            "action": "approve",
            "respondedAt": "2026-03-02T09:00:00Z",
            "responderId": "rita",
            "timeToRespond": 3600.0,
        }


@pytest.mark.django_db
def test_detail__another_agents_decision__404_as_if_it_did_not_exist(agent):
    _, other_key = make_agent("fraud")
    log(id="d-1")
    response = bearer(APIClient(), other_key).get(f"{URL}/d-1")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "no decision with id 'd-1'", "field": "id"}


@pytest.mark.django_db
def test_detail__unknown_id__404(agent_client):
    response = agent_client.get(f"{URL}/nope")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "id"


# --- The human response -------------------------------------------------------------------------------------


def respond(client: APIClient, body: dict[str, Any], entry_id: str = "d-1") -> Any:
    return client.post(f"{URL}/{entry_id}/response", data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_response__reviewer__201_with_server_set_responder_and_time(agent, reviewer):
    log(id="d-1", minutes_ago=90)
    response = respond(client_for(reviewer), {"action": "modify", "modifiedAction": "escalate", "note": "worse"})
    assert response.status_code == 201
    assert response.json()["humanResponse"] == {
        "action": "modify",
        "modifiedAction": "escalate",
        "note": "worse",
        "respondedAt": "2026-03-02T09:00:00Z",
        "responderId": "rita",
        "timeToRespond": 5400.0,
    }


@pytest.mark.django_db
def test_response__second_one__409_and_first_stands(agent, reviewer, approver):
    log(id="d-1")
    assert respond(client_for(reviewer), {"action": "dismiss"}).status_code == 201
    second = respond(client_for(approver), {"action": "approve"})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conflict"
    stored = client_for(reviewer).get(f"{URL}/d-1").json()["humanResponse"]
    assert (stored["action"], stored["responderId"]) == ("dismiss", "rita")


@pytest.mark.django_db
def test_response__personal_token_and_session__accepted(agent, reviewer):
    log(id="d-1")
    log(id="d-2")
    token = key_generate(kind=USER_KIND)
    PersonalToken.objects.create(user=reviewer, prefix=token.prefix, hashed_key=token.hashed_key)
    assert respond(bearer(APIClient(), token.key), {"action": "approve"}).status_code == 201
    session = APIClient()
    session.force_login(reviewer)
    assert respond(session, {"action": "approve"}, "d-2").status_code == 201


@pytest.mark.django_db
def test_response__agent_key_anonymous_or_no_role__refused_nothing_written(agent, agent_client):
    log(id="d-1")
    assert respond(agent_client, {"action": "approve"}).status_code == 403
    assert respond(APIClient(), {"action": "approve"}).status_code == 401
    assert respond(client_for(UserFactory(username="visitor")), {"action": "approve"}).status_code == 403
    assert "humanResponse" not in agent_client.get(f"{URL}/d-1").json()
