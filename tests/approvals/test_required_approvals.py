"""N approvals (issue 12, item 5): an agent may require N distinct approvers' accepts before a change goes live. Each
sign-off and its rationale is recorded; the Nth makes the config version; one approver never counts twice; a modify
restarts the count on its value; a reject rejects at once."""

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse

from approvals.exceptions import AlreadyApproved, SelfApprovalError
from approvals.models import AuditEvent
from approvals.services import agent_approvers_set, proposal_decide
from loopsite.exceptions import ValidationFailed
from tests.approvals.conftest import at_once
from tests.approvals.test_rule_changes import post_data, rule_events
from tests.conftest import client_for
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from thresholds.models import Agent, ConfigVersion
from thresholds.selectors import config_get_live
from tuner.models import Proposal, ProposalApproval

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(db: None) -> Any:
    return user_with_role("approver", username="carol")


@pytest.fixture
def two_of_three(agent: Agent, approver: Any, approver2: Any, carol: Any) -> Agent:
    """triage needs 2 of its designated approvers alice, bob and carol."""
    return agent_approvers_set(
        agent=agent, approvers=[approver, approver2, carol], required=2, actor=None, now=NOW, via="test"
    )


def kinds(agent: Agent) -> list[str]:
    return list(AuditEvent.objects.filter(agent=agent).exclude(kind="rules.changed").values_list("kind", flat=True))


def test_two_required__first_accept_recorded_second_by_another_goes_live(two_of_three, approver, approver2):
    proposal = make_proposal(two_of_three, proposed=0.66)

    first = proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="clear cluster", now=NOW)

    assert first.status == "pending" and config_get_live(agent=two_of_three).version == 1
    (signoff,) = ProposalApproval.objects.filter(proposal=proposal)
    assert (signoff.approver, signoff.decision, signoff.value, signoff.rationale) == (
        approver,
        "accept",
        0.66,
        "clear cluster",
    )
    recorded = AuditEvent.objects.get(kind="proposal.approval_recorded")
    assert recorded.actor == approver and recorded.message == "clear cluster" and recorded.config_version is None
    assert (recorded.detail["requiredApprovals"], recorded.detail["approvalsNeeded"]) == (2, 1)

    later = NOW + timedelta(hours=1)
    decided = proposal_decide(proposal=proposal, actor=approver2, decision="accept", rationale="agreed", now=later)

    assert (decided.status, decided.decided_by, decided.decided_value) == ("accepted", approver2, 0.66)
    live = ConfigVersion.objects.get(agent=two_of_three, is_live=True)
    assert (live.number, live.values["flag_threshold"], live.approved_by) == (2, 0.66, approver2)
    assert live.reason == f"proposal #{proposal.pk} accepted by alice, bob: alice: clear cluster; bob: agreed"
    assert kinds(two_of_three) == ["proposal.approval_recorded", "proposal.accepted", "config.activated"]
    accepted = AuditEvent.objects.get(kind="proposal.accepted")
    assert accepted.actor == approver2 and accepted.config_version == live
    assert accepted.detail["requiredApprovals"] == 2
    assert [(a["approver"], a["rationale"]) for a in accepted.detail["approvals"]] == [
        ("alice", "clear cluster"),
        ("bob", "agreed"),
    ]


def test_two_required__same_approver_accepts_twice__409_naming_how_many_more_nothing_written(two_of_three, approver):
    proposal = make_proposal(two_of_three, proposed=0.66)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="yes", now=NOW)
    rows = AuditEvent.objects.count()

    with pytest.raises(AlreadyApproved) as again:
        proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="yes!", now=NOW)

    assert again.value.status_code == 409
    assert again.value.message == "you already approved this; 1 more needed from other approvers"
    assert ProposalApproval.objects.count() == 1 and AuditEvent.objects.count() == rows
    assert Proposal.objects.get(pk=proposal.pk).status == "pending"


def test_one_approver_counts_once__the_database_refuses_a_second_counting_signoff(two_of_three, approver):
    proposal = make_proposal(two_of_three, proposed=0.66)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="yes", now=NOW)

    with pytest.raises(IntegrityError), transaction.atomic():
        ProposalApproval.objects.create(
            proposal=proposal, approver=approver, decision="accept", value=0.66, rationale="again", at=NOW
        )


def test_modify_restarts_the_count__earlier_accepts_no_longer_count_and_it_goes_live_modified(
    two_of_three, approver, approver2, carol
):
    proposal = make_proposal(two_of_three, proposed=0.66)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="0.66 is fine", now=NOW)

    later = NOW + timedelta(minutes=5)
    modified = proposal_decide(
        proposal=proposal, actor=approver2, decision="modify", value=0.64, rationale="smaller step", now=later
    )

    assert modified.status == "pending" and config_get_live(agent=two_of_three).version == 1
    alice_signoff = ProposalApproval.objects.get(approver=approver)
    assert alice_signoff.superseded_at == later  # her accept was of 0.66: it no longer counts
    body = client_for(carol).get(f"/api/v1/proposals/{proposal.pk}").json()
    assert (body["requiredApprovals"], body["approvalsNeeded"], body["approvalValue"]) == (2, 1, 0.64)
    assert [(a["approver"], a["decision"], a["value"], a["counts"]) for a in body["approvals"]] == [
        ("bob", "modify", 0.64, True),
        ("alice", "accept", 0.66, False),
    ]
    recorded = AuditEvent.objects.filter(kind="proposal.approval_recorded").last()
    assert recorded is not None and [a["approver"] for a in recorded.detail["noLongerCounting"]] == ["alice"]

    # alice may accept again: the new value, this time. Her accept makes it live as bob modified it.
    decided = proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="ok, 0.64", now=later)

    assert (decided.status, decided.decided_value) == ("modified", 0.64)
    assert config_get_live(agent=two_of_three).thresholds["flag_threshold"] == 0.64
    event = AuditEvent.objects.get(kind="proposal.modified")
    assert [(a["approver"], a["decision"]) for a in event.detail["approvals"]] == [
        ("bob", "modify"),
        ("alice", "accept"),
    ]


def test_reject_by_any_permitted_approver__rejects_at_once_after_an_accept(two_of_three, approver, carol):
    proposal = make_proposal(two_of_three, proposed=0.66)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="yes", now=NOW)

    rejected = proposal_decide(proposal=proposal, actor=carol, decision="reject", rationale="too early", now=NOW)

    assert (rejected.status, rejected.decided_by) == ("rejected", carol)
    assert config_get_live(agent=two_of_three).version == 1
    event = AuditEvent.objects.get(kind="proposal.rejected")
    assert [a["approver"] for a in event.detail["approvals"]] == ["alice"]


def test_proposer_cannot_approve_own_proposal__with_two_required(two_of_three, approver):
    proposal = make_proposal(two_of_three, proposed=0.66, created_by=approver)

    with pytest.raises(SelfApprovalError):
        proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="mine", now=NOW)
    assert not ProposalApproval.objects.exists()


def test_no_designated_approvers__two_required__any_two_distinct_approvers(agent, approver, carol):
    agent_approvers_set(agent=agent, approvers=[], required=2, actor=None, now=NOW, via="test")
    proposal = make_proposal(agent, proposed=0.66)

    assert proposal_decide(proposal=proposal, actor=carol, decision="accept", rationale="a", now=NOW).status == (
        "pending"
    )
    assert proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="b", now=NOW).status == (
        "accepted"
    )


def test_default_one_required__accept_goes_live_with_one_signoff_and_no_approval_row(agent, approver):
    proposal = make_proposal(agent, proposed=0.66)

    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="ok", now=NOW)

    assert kinds(agent) == ["proposal.accepted", "config.activated"]
    assert "approvals" not in AuditEvent.objects.get(kind="proposal.accepted").detail
    body = client_for(approver).get(f"/api/v1/proposals/{proposal.pk}").json()
    assert (body["requiredApprovals"], body["approvalsNeeded"]) == (1, 0)
    assert [(a["approver"], a["rationale"], a["counts"]) for a in body["approvals"]] == [("alice", "ok", True)]


# --- The API and the page -----------------------------------------------------------------------------------


def test_api__two_required__pending_after_the_first_409_on_a_second_accept_by_the_same(two_of_three, approver):
    proposal = make_proposal(two_of_three, proposed=0.66)
    api = client_for(approver)
    url = f"/api/v1/proposals/{proposal.pk}/decision"

    first = api.post(url, {"decision": "accept", "rationale": "yes"}, format="json")
    again = api.post(url, {"decision": "accept", "rationale": "yes"}, format="json")

    assert first.status_code == 200
    body = first.json()
    assert (body["status"], body["configVersion"], body["requiredApprovals"], body["approvalsNeeded"]) == (
        "pending",
        1,
        2,
        1,
    )
    assert [(a["approver"], a["rationale"]) for a in body["approvals"]] == [("alice", "yes")]
    assert again.status_code == 409 and again.json()["error"] == {
        "code": "already_approved",
        "message": "you already approved this; 1 more needed from other approvers",
        "field": None,
    }


def test_proposal_page__two_required__shows_approvals_so_far_and_how_many_more(client, two_of_three, approver, carol):
    proposal = make_proposal(two_of_three, proposed=0.66)
    client.force_login(approver)

    response = client.post(
        reverse("proposal-detail", args=[proposal.pk]), {"decision": "accept", "rationale": "clear"}, follow=True
    )

    html = response.content.decode()
    assert "Your approval is recorded: 1 more needed from other approvers before flag_threshold changes." in html
    assert "<strong>1 of 2</strong> required: 1 more needed from other approvers before 0.66 goes live" in html
    assert "alice approved 0.66 on" in html and "“clear”" in html
    assert 'value="accept"' not in html and 'data-testid="my-approval">You approved 0.66' in html

    client.force_login(carol)
    other = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()
    assert 'value="accept"' in other and "Accept: make 0.66 live now" in other


def test_proposal_page__after_a_modify__says_earlier_approvals_no_longer_count(client, two_of_three, approver, carol):
    proposal = make_proposal(two_of_three, proposed=0.66)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="yes", now=NOW)
    proposal_decide(proposal=proposal, actor=carol, decision="modify", value=0.64, rationale="smaller", now=NOW)
    client.force_login(approver)

    html = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()

    assert "carol modified the value to 0.64, which restarted the count: these earlier approvals no longer count" in (
        html
    )
    assert "Accept: make 0.64 live now" in html


# --- Setting approvers: the command, create_agent, the admin --------------------------------------------------


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def test_set_approvers__approvers_and_required__one_rules_changed_event_with_before_and_after(
    agent, approver, approver2
):
    output = run("set_approvers", "triage", "alice", "bob", "--required", "2")

    assert "triage: designated approvers alice, bob; 2 approvals required" in output
    (event,) = rule_events(agent)
    assert event.actor is None and event.actor_label == "set_approvers" and event.detail == {"via": "set_approvers"}
    assert event.before == {"approvers": [], "requiredApprovals": 1}
    assert event.after == {"approvers": ["alice", "bob"], "requiredApprovals": 2}

    assert "2 approvals required" in run("set_approvers", "triage")  # prints, changes nothing
    run("set_approvers", "triage", "--required", "1")
    run("set_approvers", "triage", "--clear")
    agent.refresh_from_db()
    assert (list(agent.approvers.all()), agent.required_approvals) == ([], 1)
    assert [(e.before, e.after) for e in rule_events(agent)[1:]] == [
        ({"requiredApprovals": 2}, {"requiredApprovals": 1}),
        ({"approvers": ["alice", "bob"]}, {"approvers": []}),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alice", "--required", "2"], "2 approvals cannot be required of 1 designated approver"),
        (["alice", "rita"], "'rita' is not an approver"),
        (["ghost"], "USERNAME: unknown user 'ghost'"),
        (["--required", "0"], "required approvals must be a whole number, 1 or more"),
        (["alice", "--clear"], "give USERNAMEs or --clear, not both"),
    ],
)
def test_set_approvers__bad_input__refused_nothing_changed(agent, approver, reviewer, args, message):
    with pytest.raises(CommandError, match=message):
        run("set_approvers", "triage", *args)

    agent.refresh_from_db()
    assert (list(agent.approvers.all()), agent.required_approvals) == ([], 1)
    assert not rule_events(agent)


def test_create_agent__approvers_and_required_approvals__set_and_audited(approver, approver2):
    run("create_agent", "fraud", "--threshold", "t=0.5", "--approver", "alice", "--approver", "bob",
        "--required-approvals", "2")  # fmt: skip

    agent = Agent.objects.get(agent_id="fraud")
    assert agent.required_approvals == 2 and sorted(agent.approvers.values_list("username", flat=True)) == [
        "alice",
        "bob",
    ]
    (event,) = rule_events(agent)
    assert event.after == {"approvers": ["alice", "bob"], "requiredApprovals": 2}


def test_create_agent__more_required_than_approvers__refused_nothing_written(approver):
    with pytest.raises(CommandError, match="--required-approvals: 2 approvals cannot be required of 1"):
        run("create_agent", "fraud", "--threshold", "t=0.5", "--approver", "alice", "--required-approvals", "2")

    assert not Agent.objects.filter(agent_id="fraud").exists()


def test_admin_agent_edit__more_required_than_designated__form_error_nothing_saved(client, agent, approver):
    client.force_login(user_with_role("admin", username="root"))
    url = f"/admin/thresholds/agent/{agent.pk}/change/"
    data = {**post_data(client.get(url)), "approvers": [str(approver.pk)], "required_approvals": "2"}

    response = client.post(url, data)

    assert response.status_code == 200
    assert "2 approvals cannot be required of 1 designated approver" in response.content.decode()
    agent.refresh_from_db()
    assert agent.required_approvals == 1 and not agent.approvers.exists() and not rule_events(agent)


def test_admin_agent_edit__required_approvals__audited(client, agent, approver, approver2):
    client.force_login(user_with_role("admin", username="root"))
    url = f"/admin/thresholds/agent/{agent.pk}/change/"
    data = {**post_data(client.get(url)), "approvers": [str(approver.pk), str(approver2.pk)], "required_approvals": "2"}

    assert client.post(url, data).status_code == 302
    (event,) = rule_events(agent)
    assert event.after == {"approvers": ["alice", "bob"], "requiredApprovals": 2}


def test_designation__more_required_than_designated__refused_by_the_service(agent, approver):
    with pytest.raises(ValidationFailed, match="designate at least 3, or require at most 1"):
        agent_approvers_set(agent=agent, approvers=[approver], required=3, actor=None, now=NOW, via="test")


# --- Two approvers at once ----------------------------------------------------------------------------------


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_two_required__two_approvers_accept_at_once__exactly_one_config_version():
    agent, _ = make_agent()
    alice = user_with_role("approver", username="alice")
    bob = user_with_role("approver", username="bob")
    agent_approvers_set(agent=agent, approvers=[alice, bob], required=2, actor=None, now=NOW, via="test")
    proposal = make_proposal(agent, proposed=0.66)
    outcomes = at_once(
        *[
            lambda user=user: proposal_decide(
                proposal=proposal, actor=user, decision="accept", rationale=f"{user.username} agrees", now=NOW
            )
            for user in (alice, bob)
        ]
    )

    assert all(isinstance(o, Proposal) for o in outcomes), outcomes
    assert sorted(o.status for o in outcomes) == ["accepted", "pending"]
    assert ConfigVersion.objects.filter(agent=agent).count() == 2
    assert ProposalApproval.objects.filter(proposal=proposal).count() == 2
    assert AuditEvent.objects.filter(kind="proposal.accepted").count() == 1
    assert AuditEvent.objects.filter(kind="proposal.approval_recorded").count() == 1
