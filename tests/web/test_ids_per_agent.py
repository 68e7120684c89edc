"""The reviewer's pages when two agents use one entry id (ids are unique per agent): the decision page takes
``?agentId=``, and the queue names the agent of every item in its forms, claims and links."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from auditlog.claims import claim_acquire
from auditlog.models import Decision
from auditlog.services import BulkResponse, decision_log, response_record_bulk
from tests.factories import entry, make_agent

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def log_queued(agent_id: str, entry_id: str) -> None:
    now = timezone.now()
    body = entry(agent_id, id=entry_id, timestamp=(now - timedelta(hours=1)).isoformat())
    status, decision = decision_log(raw=body, now=now)
    assert status == "created" and decision.queued


@pytest.fixture
def twin(agent: Any) -> str:
    """One id, queued for both triage and fraud."""
    make_agent("fraud")
    log_queued("triage", "twin")
    log_queued("fraud", "twin")
    return "twin"


def answers(entry_id: str) -> dict[str, Any]:
    return dict(Decision.objects.filter(entry_id=entry_id).values_list("agent__agent_id", "response_action"))


def test_decision_page__shared_id__409_asking_for_agentId_and_with_it_that_agents_decision(
    reviewer: Any, twin: str
) -> None:
    client = signed_in(reviewer)

    ambiguous = client.get(f"/decisions/{twin}/")
    page = client.get(f"/decisions/{twin}/?agentId=fraud")

    assert ambiguous.status_code == 409
    assert "more than one agent (fraud, triage)" in ambiguous.content.decode()
    assert "agentId" in ambiguous.content.decode()
    assert page.status_code == 200 and "<h1>fraud: flag" in page.content.decode()
    assert client.get(f"/decisions/{twin}/?agentId=nobody").status_code == 404


def test_decision_page__answer__only_that_agents_decision_and_back_to_its_address(reviewer: Any, twin: str) -> None:
    response = signed_in(reviewer).post(f"/decisions/{twin}/?agentId=fraud", {"action": "dismiss"})

    assert response.status_code == 302 and response["Location"] == f"/decisions/{twin}/?agentId=fraud"
    assert answers(twin) == {"fraud": "dismiss", "triage": None}


def test_queue__items_name_their_agent_in_forms_and_claims(reviewer: Any, twin: str) -> None:
    html = signed_in(reviewer).get("/queue/").content.decode()

    for agent_id in ("triage", "fraud"):
        assert f'data-agent-id="{agent_id}" data-key="{agent_id}:{twin}"' in html
        assert f'<input type="hidden" name="entry_agent" value="{agent_id}">' in html
        assert f'name="item" value="{agent_id}:{twin}"' in html


def test_queue__respond_with_entry_agent__only_that_agents_item_answered(reviewer: Any, twin: str) -> None:
    client = signed_in(reviewer)

    ambiguous = client.post("/queue/respond/", {"entry_id": twin, "response": "approve"}, headers=HX).content.decode()
    assert "more than one agent" in ambiguous and answers(twin) == {"triage": None, "fraud": None}

    client.post("/queue/respond/", {"entry_id": twin, "entry_agent": "fraud", "response": "dismiss"}, headers=HX)
    assert answers(twin) == {"fraud": "dismiss", "triage": None}


def test_queue__bulk_items__each_agents_own_decision(reviewer: Any, twin: str) -> None:
    signed_in(reviewer).post(
        "/queue/respond/", {"item": [f"triage:{twin}", f"fraud:{twin}"], "response": "escalate"}, headers=HX
    )
    assert answers(twin) == {"fraud": "escalate", "triage": "escalate"}


def test_queue__thumbs_in_binary_mode__per_agent(reviewer: Any, agent: Any) -> None:
    make_agent("fraud", binary_mode=True)
    log_queued("fraud", "thumb")
    log_queued("triage", "thumb")

    signed_in(reviewer).post("/queue/respond/", {"item": "fraud:thumb", "thumb": "down"}, headers=HX)

    assert answers("thumb") == {"fraud": "dismiss", "triage": None}


def test_claims__per_agent_and_entry_id(reviewer: Any, approver: Any, twin: str) -> None:
    now = timezone.now()
    assert claim_acquire(entry_id=twin, agent_id="triage", reviewer="alice", now=now).won
    # The other agent's item with the same id is not claimed by that: another reviewer takes it.
    mine = signed_in(reviewer).post("/queue/claim/", {"entry_id": twin, "entry_agent": "fraud"}).json()
    held = signed_in(reviewer).post("/queue/claim/", {"entry_id": twin, "entry_agent": "triage"}).json()
    unnamed = signed_in(reviewer).post("/queue/claim/", {"entry_id": twin}).json()

    assert mine["won"] is True
    assert held["won"] is False and held["holder"] == "alice"
    assert unnamed["won"] is False and "agentId" in unnamed["message"]
    claims = dict(Decision.objects.filter(entry_id=twin).values_list("agent__agent_id", "claimed_by"))
    assert claims == {"triage": "alice", "fraud": "rita"}

    signed_in(reviewer).post("/queue/claim/", {"release": twin, "release_agent": "fraud"})
    assert Decision.objects.get(entry_id=twin, agent__agent_id="fraud").claimed_by is None
    assert Decision.objects.get(entry_id=twin, agent__agent_id="triage").claimed_by == "alice"


def test_queue__undo_link__names_the_agent_and_brings_back_that_agents_answer(reviewer: Any, twin: str) -> None:
    client = signed_in(reviewer)
    client.post("/queue/respond/", {"entry_id": twin, "entry_agent": "fraud", "response": "dismiss"}, headers=HX)

    page = client.get("/queue/").content.decode()
    assert f"?amend={twin}&amp;amend_agent=fraud" in page and f'data-undo="fraud:{twin}"' in page
    shown = client.get(f"/queue/?amend={twin}&amend_agent=fraud").content.decode()
    assert f'data-key="fraud:{twin}" data-amending="1"' in shown
    other = client.get(f"/queue/?amend={twin}&amend_agent=triage").content.decode()
    assert "data-amending" not in other


def test_bulk_responses__shared_id__skipped_without_agent_recorded_with_it(agent: Any, twin: str) -> None:
    raw: dict[str, object] = {"action": "approve", "respondedAt": timezone.now().isoformat()}
    now = timezone.now()

    assert response_record_bulk(items=[BulkResponse(entry_id=twin, raw=raw, responder_id="sim")], now=now) == 0
    written = response_record_bulk(
        items=[BulkResponse(entry_id=twin, raw=raw, responder_id="sim", agent_id="triage")], now=now
    )

    assert written == 1 and answers(twin) == {"triage": "approve", "fraud": None}
