"""Hand-made proposals and the lock through the API and the pages: the same guard as every other path."""

import pytest
from django.test import Client
from django.utils import timezone

from approvals.lock import agent_config_lock
from approvals.models import AuditEvent
from approvals.services import proposal_create_manual, proposal_decide
from tests.conftest import client_for
from tests.factories import make_proposal
from thresholds.models import Agent, ConfigVersion
from thresholds.selectors import config_get_live
from tuner.models import Proposal


def _propose(user, agent: Agent, **body):
    payload = {"thresholdName": "flag_threshold", "proposedValue": 0.66, "rationale": "queue is noisy", **body}
    return client_for(user).post(f"/api/v1/agents/{agent.agent_id}/proposals", payload, format="json")


@pytest.mark.django_db
def test_post_proposal__201_rendered_as_get_and_the_creator_cannot_decide_it(agent, approver, approver2):
    response = _propose(approver, agent)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body == client_for(approver).get(f"/api/v1/proposals/{body['id']}").json()
    assert (body["thresholdName"], body["currentValue"], body["proposedValue"]) == ("flag_threshold", 0.6, 0.66)
    assert (body["status"], body["createdBy"], body["direction"]) == ("pending", "alice", "increase")
    own = client_for(approver).post(
        f"/api/v1/proposals/{body['id']}/decision", {"decision": "accept", "rationale": "mine"}, format="json"
    )
    assert own.status_code == 403 and "another approver" in own.json()["error"]["message"]
    other = client_for(approver2).post(
        f"/api/v1/proposals/{body['id']}/decision", {"decision": "accept", "rationale": "ok"}, format="json"
    )
    assert other.status_code == 200 and other.json()["configVersion"] == 2


@pytest.mark.django_db
def test_post_proposal__past_the_cycles_bound__400_naming_rule_and_range_nothing_written(agent, approver, approver2):
    first = proposal_create_manual(
        agent=agent,
        threshold_name="flag_threshold",
        proposed_value=0.7,
        rationale="r",
        actor=approver,
        now=timezone.now(),
    )
    proposal_decide(proposal=first, actor=approver2, decision="accept", rationale="ok", now=timezone.now())
    events = AuditEvent.objects.count()

    response = _propose(approver2, agent, proposedValue=0.8)  # within 20 % of 0.7, 33 % from the cycle's 0.6

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "proposedValue"
    assert "more than 20% from 0.6" in error["message"] and "allows 0.48 to 0.72" in error["message"]
    assert Proposal.objects.count() == 1 and AuditEvent.objects.count() == events


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rationale": ""}, "rationale"),
        ({"proposedValue": "high"}, "proposedValue"),
        ({"thresholdName": "nope"}, "thresholdName"),
        ({"proposedValue": 0.6}, "proposedValue"),  # no change
    ],
)
def test_post_proposal__bad_input__400_naming_the_field(agent, approver, body, field):
    response = _propose(approver, agent, **body)

    assert response.status_code == 400, response.content
    assert field in str(response.json())
    assert not Proposal.objects.exists()


@pytest.mark.django_db
def test_post_proposal__reviewer_and_agent_key_forbidden__unknown_agent_404(agent, agent_client, reviewer, approver):
    assert _propose(reviewer, agent).status_code == 403
    url = f"/api/v1/agents/{agent.agent_id}/proposals"
    assert agent_client.post(url, {"thresholdName": "flag_threshold"}, format="json").status_code == 403
    assert client_for(approver).post("/api/v1/agents/nobody/proposals", {}, format="json").status_code == 404


@pytest.mark.django_db
def test_lock_api__lock_refuses_proposals_and_accepts_409__unlock_again(agent, approver, approver2):
    pending = make_proposal(agent, proposed=0.66)
    url = f"/api/v1/agents/{agent.agent_id}/lock"

    locked = client_for(approver).post(url, {"rationale": "converged"}, format="json")

    assert locked.status_code == 200
    assert locked.json() | {"lockedAt": None} == {
        "agentId": agent.agent_id,
        "locked": True,
        "lockedAt": None,
        "lockedBy": "alice",
        "rationale": "converged",
    }
    assert client_for(approver2).get(url).json()["locked"] is True
    refused = _propose(approver2, agent)
    assert refused.status_code == 409 and "locked" in refused.json()["error"]["message"]
    accept = client_for(approver2).post(
        f"/api/v1/proposals/{pending.pk}/decision", {"decision": "accept", "rationale": "go"}, format="json"
    )
    assert accept.status_code == 409 and config_get_live(agent=agent).version == 1
    assert client_for(approver2).post(url, {"rationale": "again"}, format="json").status_code == 409

    unlocked = client_for(approver2).post(
        f"{url.removesuffix('lock')}unlock", {"rationale": "new season"}, format="json"
    )
    assert unlocked.status_code == 200 and unlocked.json()["locked"] is False
    assert _propose(approver2, agent).status_code == 201


@pytest.mark.django_db
def test_lock_api__reviewer_403__missing_rationale_400(agent, reviewer, approver):
    url = f"/api/v1/agents/{agent.agent_id}/lock"
    assert client_for(reviewer).post(url, {"rationale": "x"}, format="json").status_code == 403
    response = client_for(approver).post(url, {}, format="json")
    assert response.status_code == 400 and "rationale" in str(response.json())
    assert not Agent.objects.get(pk=agent.pk).is_locked


# --- pages ------------------------------------------------------------------------------------------------


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_proposal_page__shows_this_cycles_range_from_the_cycle_start_value(agent, approver, approver2):
    first = proposal_create_manual(
        agent=agent,
        threshold_name="flag_threshold",
        proposed_value=0.7,
        rationale="r",
        actor=approver,
        now=timezone.now(),
    )
    proposal_decide(proposal=first, actor=approver2, decision="accept", rationale="ok", now=timezone.now())
    later = make_proposal(agent, proposed=0.72, current=0.7)

    page = _signed_in(approver).get(f"/proposals/{later.pk}/").content.decode()

    assert "this cycle allows 0.48 to 0.72: within 20 % of 0.6" in page
    assert 'min="0.48" max="0.72"' in page
    assert "2 of 3 changes may still go live" in page


@pytest.mark.django_db
def test_dashboard__lock_and_unlock_by_form__shown_and_audited(agent, approver, reviewer):
    page = _signed_in(approver)
    response = page.post(f"/lock/{agent.agent_id}/", {"action": "lock", "rationale": "converged"}, follow=True)

    text = response.content.decode()
    assert "config is locked: the tuner proposes nothing" in text
    assert "Locked</strong> by alice" in text and "converged" in text
    assert "locked</span>" in page.get("/dashboard/").content.decode()
    assert "Unlock" in _signed_in(approver).get(f"/dashboard/{agent.agent_id}/").content.decode()
    assert (
        '<button type="submit">Lock' not in _signed_in(reviewer).get(f"/dashboard/{agent.agent_id}/").content.decode()
    )
    assert (
        _signed_in(reviewer).post(f"/lock/{agent.agent_id}/", {"action": "unlock", "rationale": "x"}).status_code == 403
    )

    bad = page.post(f"/lock/{agent.agent_id}/", {"action": "unlock", "rationale": ""}, follow=True)
    assert "Nothing changed: rationale is required" in bad.content.decode()
    page.post(f"/lock/{agent.agent_id}/", {"action": "unlock", "rationale": "new rules"})
    assert not Agent.objects.get(pk=agent.pk).is_locked
    assert list(AuditEvent.objects.values_list("kind", flat=True)) == ["agent.locked", "agent.unlocked"]


@pytest.mark.django_db
def test_proposal_page__locked_agent_says_so(agent, approver, approver2):
    proposal = make_proposal(agent, proposed=0.66)
    agent_config_lock(agent=agent, actor=approver, rationale="converged", now=timezone.now())

    page = _signed_in(approver2).get(f"/proposals/{proposal.pk}/").content.decode()
    assert "config is locked (converged)" in page
    response = _signed_in(approver2).post(f"/proposals/{proposal.pk}/", {"decision": "accept", "rationale": "go"})
    assert response.status_code == 409 and ConfigVersion.objects.filter(agent=agent).count() == 1


@pytest.mark.django_db
def test_lock_config_command__locks_unlocks_and_refuses_a_reviewer(agent, approver, reviewer, capsys):
    from django.core.management import CommandError, call_command

    call_command("lock_config", agent.agent_id, "--by", "alice", "--reason", "converged")
    assert "triage's config is locked." in capsys.readouterr().out
    assert Agent.objects.get(pk=agent.pk).lock_rationale == "converged"
    with pytest.raises(CommandError, match="not an approver"):
        call_command("lock_config", agent.agent_id, "--by", reviewer.username, "--reason", "x", "--unlock")
    call_command("lock_config", agent.agent_id, "--by", "alice", "--reason", "new season", "--unlock")
    assert "unlocked" in capsys.readouterr().out and not Agent.objects.get(pk=agent.pk).is_locked
