"""Corrections (issue 10): a misclick is no longer permanent, and nothing is overwritten.

The reproduction: the first response stood, a second got 409 and the admin is read-only, so one wrong key became
training data for the tuner and evidence for the watchdog with no way back.
"""

from datetime import timedelta
from typing import Any

import pytest
import time_machine

from auditlog.models import ResponseRevision
from tests.conftest import client_for
from tests.factories import NOW, entry, user_with_role
from tuner.selectors import Window, window_counts

URL = "/api/v1/decisions"


def _respond(user: Any, entry_id: str, **body: Any):
    return client_for(user).post(f"{URL}/{entry_id}/response", {"action": "dismiss", **body}, format="json")


@pytest.fixture
def answered(agent, agent_client, reviewer) -> str:
    body = entry(id="d-1", timestamp=(NOW - timedelta(hours=1)).isoformat())
    assert agent_client.post(URL, body, format="json").status_code == 201
    assert _respond(reviewer, "d-1").status_code == 201
    return "d-1"


@pytest.mark.django_db
def test_the_author_amends_within_the_window__label_replaced_history_kept(agent, answered, reviewer):
    assert _respond(reviewer, answered, action="approve").status_code == 409  # without amends, the first stands

    response = _respond(reviewer, answered, action="approve", note="misclick", amends=True)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["humanResponse"]["action"] == "approve" and body["humanResponse"]["note"] == "misclick"
    assert [(r["revision"], r["action"], r["responderId"]) for r in body["responseHistory"]] == [
        (1, "dismiss", "rita"),
        (2, "approve", "rita"),
    ]
    assert client_for(reviewer).get(f"{URL}/{answered}").json() == body
    # The amended label is what the next tuner cycle reads.
    counts = window_counts(agent=agent, window=Window(NOW.date(), NOW - timedelta(weeks=4), NOW))
    assert counts.by_response["approve"] == 1 and counts.by_response["dismiss"] == 0


@pytest.mark.django_db
def test_a_never_amended_answer_is_its_own_history(answered, reviewer):
    history = client_for(reviewer).get(f"{URL}/{answered}").json()["responseHistory"]
    assert [(r["revision"], r["action"]) for r in history] == [(1, "dismiss")]
    assert not ResponseRevision.objects.exists()


@pytest.mark.django_db
def test_the_authors_window_is_24_hours__then_only_an_approver(answered, reviewer, approver):
    with time_machine.travel(NOW + timedelta(hours=24), tick=False):
        assert _respond(reviewer, answered, action="escalate", amends=True).status_code == 201
    with time_machine.travel(NOW + timedelta(hours=48, seconds=1), tick=False):
        late = _respond(reviewer, answered, action="approve", amends=True)
        assert late.status_code == 403 and "older than 24 h" in late.json()["error"]["message"]
        assert _respond(approver, answered, action="approve", amends=True).status_code == 201
    history = client_for(approver).get(f"{URL}/{answered}").json()["responseHistory"]
    assert [(r["action"], r["responderId"]) for r in history] == [
        ("dismiss", "rita"),
        ("escalate", "rita"),
        ("approve", "alice"),
    ]


@pytest.mark.django_db
def test_another_reviewer_may_not_amend(answered):
    other = user_with_role("reviewer", username="ron")

    response = _respond(other, answered, action="approve", amends=True)

    assert response.status_code == 403 and "only they" in response.json()["error"]["message"]
    assert client_for(other).get(f"{URL}/{answered}").json()["humanResponse"]["action"] == "dismiss"


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), [({"amends": "yes"}, "amends"), ({"action": "maybe"}, "action")])
def test_bad_amendment__400_naming_the_field_nothing_changed(answered, reviewer, body, field):
    response = _respond(reviewer, answered, **{"amends": True, **body})

    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert not ResponseRevision.objects.exists()


@pytest.mark.django_db
def test_amending_an_unanswered_decision__400(agent_client, reviewer):
    agent_client.post(URL, entry(id="fresh", timestamp=(NOW - timedelta(hours=1)).isoformat()), format="json")

    response = _respond(reviewer, "fresh", amends=True)

    assert response.status_code == 400 and response.json()["error"]["field"] == "amends"
