"""Entry ids are unique per agent (issue 12, item 6): one agent can neither take another's id nor tell whether it
exists; people name the agent when an id is used by more than one."""

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from auditlog.models import Decision
from tests.api.conftest import bearer
from tests.conftest import client_for
from tests.factories import entry, make_agent

URL = "/api/v1/decisions"


@pytest.fixture
def clients(db: None) -> tuple[APIClient, APIClient]:
    """Agent A (triage) and agent B (fraud), each with its own key."""
    _, key_a = make_agent("triage")
    _, key_b = make_agent("fraud")
    return bearer(APIClient(), key_a), bearer(APIClient(), key_b)


def post(client: APIClient, body: dict[str, Any]) -> Any:
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def shared(a: APIClient, b: APIClient, entry_id: str = "shared-1") -> None:
    """Both agents log ``entry_id``, with different content."""
    assert post(a, entry("triage", id=entry_id, sessionId="session-a")).status_code == 201
    assert post(b, entry("fraud", id=entry_id, sessionId="session-b")).status_code == 201


def respond(client: APIClient, entry_id: str, query: str = "", action: str = "approve") -> Any:
    return client.post(
        f"{URL}/{entry_id}/response{query}", data=json.dumps({"action": action}), content_type="application/json"
    )


# --- The reproduction: agents ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_id_two_agents__both_201_each_reads_back_its_own(clients: tuple[APIClient, APIClient]) -> None:
    a, b = clients
    # B logs first an id A will use later: A is not blocked (it got 409 while ids were global).
    first = post(b, entry("fraud", id="txn-1", sessionId="session-b"))
    later = post(a, entry("triage", id="txn-1", sessionId="session-a"))

    assert (first.status_code, later.status_code) == (201, 201)
    mine_a, mine_b = a.get(f"{URL}/txn-1").json(), b.get(f"{URL}/txn-1").json()
    assert (mine_a["agentId"], mine_a["sessionId"]) == ("triage", "session-a")
    assert (mine_b["agentId"], mine_b["sessionId"]) == ("fraud", "session-b")
    assert Decision.objects.filter(entry_id="txn-1").count() == 2


@pytest.mark.django_db
def test_another_agents_id__404_with_the_body_of_an_id_nobody_used(clients: tuple[APIClient, APIClient]) -> None:
    a, b = clients
    before = b.get(f"{URL}/a-only")  # nobody has used it yet
    assert post(a, entry("triage", id="a-only")).status_code == 201

    after = b.get(f"{URL}/a-only")  # A's now: B must not be able to tell
    named = b.get(f"{URL}/a-only?agentId=triage")  # naming A does not help

    assert before.status_code == after.status_code == named.status_code == 404
    assert after.json() == before.json() == named.json()
    assert after.json()["error"] == {"code": "not_found", "message": "no decision with id 'a-only'", "field": "id"}
    assert a.get(f"{URL}/a-only").status_code == 200


@pytest.mark.django_db
def test_idempotency__per_agent__same_content_200_other_content_409(clients: tuple[APIClient, APIClient]) -> None:
    a, b = clients
    shared(a, b)

    again = post(a, entry("triage", id="shared-1", sessionId="session-a"))
    other = post(a, entry("triage", id="shared-1", sessionId="session-x"))

    assert again.status_code == 200 and again.json()["sessionId"] == "session-a"
    assert other.status_code == 409 and other.json()["error"]["field"] == "id"
    assert b.get(f"{URL}/shared-1").json()["sessionId"] == "session-b"


@pytest.mark.django_db
def test_batch__one_id_two_agents__created_for_both_then_duplicate_and_conflict_per_agent(
    clients: tuple[APIClient, APIClient],
) -> None:
    a, b = clients

    def batch(client: APIClient, *bodies: dict[str, Any]) -> list[str]:
        response = client.post(f"{URL}/batch", data=json.dumps({"entries": bodies}), content_type="application/json")
        return [r["status"] for r in response.json()["results"]]

    assert batch(b, entry("fraud", id="b-1", sessionId="b")) == ["created"]
    assert batch(a, entry("triage", id="b-1", sessionId="a")) == ["created"]
    assert batch(a, entry("triage", id="b-1", sessionId="a"), entry("triage", id="b-1", sessionId="z")) == [
        "duplicate",
        "conflict",
    ]
    assert a.get(f"{URL}/b-1").json()["sessionId"] == "a" and b.get(f"{URL}/b-1").json()["sessionId"] == "b"


# --- People: the agent is named when an id is used by more than one -----------------------------------------


@pytest.fixture
def person(clients: tuple[APIClient, APIClient], reviewer: Any) -> APIClient:
    """A reviewer's client, once both agents have logged ``shared-1``."""
    shared(*clients)
    return client_for(reviewer)


@pytest.mark.django_db
def test_reviewer_get__shared_id__409_naming_agentId_and_with_it_the_entry(person: APIClient) -> None:
    ambiguous = person.get(f"{URL}/shared-1")
    chosen = person.get(f"{URL}/shared-1?agentId=fraud")

    assert ambiguous.status_code == 409
    error = ambiguous.json()["error"]
    assert error["field"] == "agentId" and "fraud, triage" in error["message"] and "agentId" in error["message"]
    assert chosen.status_code == 200 and chosen.json()["sessionId"] == "session-b"
    assert person.get(f"{URL}/shared-1?agentId=nobody").status_code == 404


@pytest.mark.django_db
def test_reviewer_get__id_of_one_agent__no_agentId_needed(clients: tuple[APIClient, APIClient], reviewer: Any) -> None:
    a, _ = clients
    post(a, entry("triage", id="only-a"))
    response = client_for(reviewer).get(f"{URL}/only-a")
    assert response.status_code == 200 and response.json()["agentId"] == "triage"


@pytest.mark.django_db
def test_response__shared_id__409_without_agentId_nothing_written_then_only_that_agents_answered(
    person: APIClient,
) -> None:
    refused = respond(person, "shared-1")
    assert refused.status_code == 409 and refused.json()["error"]["field"] == "agentId"
    assert not Decision.objects.filter(entry_id="shared-1", response_action__isnull=False).exists()

    done = respond(person, "shared-1", "?agentId=triage", action="dismiss")
    assert done.status_code == 201 and done.json()["agentId"] == "triage"
    answered = dict(Decision.objects.filter(entry_id="shared-1").values_list("agent__agent_id", "response_action"))
    assert answered == {"triage": "dismiss", "fraud": None}
    # An amendment goes to the same agent's decision.
    amended = person.post(
        f"{URL}/shared-1/response?agentId=triage",
        data=json.dumps({"action": "approve", "amends": True}),
        content_type="application/json",
    )
    assert amended.status_code == 201 and [r["action"] for r in amended.json()["responseHistory"]] == [
        "dismiss",
        "approve",
    ]


@pytest.mark.django_db
def test_schema__detail_and_response__document_agentId_404_and_409(db: None) -> None:
    schema = APIClient().get("/api/schema/?format=json").json()
    for path, method in (("/api/v1/decisions/{entry_id}", "get"), ("/api/v1/decisions/{entry_id}/response", "post")):
        operation = schema["paths"][path][method]
        assert "agentId" in [p["name"] for p in operation["parameters"]]
        assert {"404", "409"} <= set(operation["responses"])
