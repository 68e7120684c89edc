"""Discussion on a proposal: comments in order with the decisions, in the audit trail and its export, emailed."""

import csv
import io
from typing import Any

import pytest
from django.core import mail

from approvals.chain import chain_verify
from approvals.models import AuditEvent
from approvals.services import proposal_decide
from tests.conftest import client_for
from tests.factories import NOW, make_proposal, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob() -> Any:
    return user_with_role("approver", username="bob", email="bob@example.com")


def test_comments__api__in_order_with_the_decision_and_chained(
    agent, approver, bob, django_capture_on_commit_callbacks
):
    approver.email = "alice@example.com"
    approver.save()
    agent.approvers.add(approver, bob)
    proposal = make_proposal(agent, proposed=0.66)
    url = f"/api/v1/proposals/{proposal.pk}/comments"

    with django_capture_on_commit_callbacks(execute=True):
        posted = client_for(bob).post(url, {"text": "the cluster is all one merchant"}, format="json")
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="agreed", now=NOW)
    client_for(approver).post(url, {"text": "watching it this week"}, format="json")

    assert posted.status_code == 201 and posted.json()["kind"] == "proposal.commented"
    thread = client_for(approver).get(url).json()["results"]
    assert [(e["kind"], e["actor"], e["message"]) for e in thread] == [
        ("proposal.commented", "bob", "the cluster is all one merchant"),
        ("proposal.accepted", "alice", "agreed"),
        ("proposal.commented", "alice", "watching it this week"),
    ]
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]  # the agent's approvers but the author
    assert "bob commented on proposal" in mail.outbox[0].subject and "one merchant" in mail.outbox[0].body
    assert next(chain_verify([agent.agent_id])).broken is None


def test_comments__in_the_audit_csv_export(agent, approver):
    proposal = make_proposal(agent)
    client_for(approver).post(f"/api/v1/proposals/{proposal.pk}/comments", {"text": "why now?"}, format="json")

    exported = client_for(approver).get(f"/api/v1/audit?agentId={agent.agent_id}&export=csv")

    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert [(r["kind"], r["message"]) for r in rows] == [("proposal.commented", "why now?")]


@pytest.mark.parametrize(("body", "field"), [({"text": ""}, "text"), ({}, "text"), ({"text": "x" * 4001}, "text")])
def test_comments__empty_or_too_long__400_naming_the_field(agent, approver, body, field):
    proposal = make_proposal(agent)
    response = client_for(approver).post(f"/api/v1/proposals/{proposal.pk}/comments", body, format="json")
    assert response.status_code == 400 and field in str(response.json())
    assert not AuditEvent.objects.filter(kind="proposal.commented").exists()


def test_comments__reviewer__403_and_nothing_written(agent, reviewer):
    proposal = make_proposal(agent)
    response = client_for(reviewer).post(f"/api/v1/proposals/{proposal.pk}/comments", {"text": "hi"}, format="json")
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(kind="proposal.commented").exists()


def test_comments__proposal_page__form_posts_and_the_thread_shows_it(client, agent, approver):
    proposal = make_proposal(agent)
    client.force_login(approver)

    posted = client.post(f"/proposals/{proposal.pk}/comment/", {"text": "is this the holiday spike?"}, follow=True)

    page = posted.content.decode()
    assert posted.status_code == 200 and "Comment posted; the agent&#x27;s approvers are told." in page
    assert 'data-testid="discussion"' in page and "is this the holiday spike?" in page
    empty = client.post(f"/proposals/{proposal.pk}/comment/", {"text": "  "}, follow=True).content.decode()
    assert "Not posted: text is required." in empty


def test_comments__admin_change_page__thread_and_form(client, agent, approver):
    proposal = make_proposal(agent)
    client.force_login(approver)

    client.post(f"/admin/tuner/proposal/{proposal.pk}/comment/", {"text": "from the admin"})
    page = client.get(f"/admin/tuner/proposal/{proposal.pk}/change/").content.decode()

    assert "from the admin" in page and f'action="/admin/tuner/proposal/{proposal.pk}/comment/"' in page
