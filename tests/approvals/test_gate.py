import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from approvals.exceptions import AlreadyDecided, GuardrailViolation, NotAnApprover, SelfApprovalError
from approvals.models import AuditEvent
from approvals.services import config_rollback, proposal_create_manual, proposal_decide, proposals_expire
from loopsite.exceptions import ValidationFailed
from tests.approvals.conftest import log_responded
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from thresholds.models import ConfigVersion
from thresholds.selectors import config_get_live
from tuner.models import Proposal


@pytest.mark.django_db
def test_proposal_decide__accept__new_live_version_with_new_etag_and_audit_rows(agent, approver):
    before = config_get_live(agent=agent)
    ids = log_responded(agent, prefix="ev", n=6, errors=6, start=NOW - timedelta(days=3))
    proposal = make_proposal(agent, proposed=0.66, evidence_ids=ids)

    decided = proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="clear cluster", now=NOW)

    after = config_get_live(agent=agent)
    assert decided.status == "accepted" and decided.decided_by == approver and decided.decided_value == 0.66
    assert after.version == before.version + 1 and after.etag != before.etag
    assert after.thresholds == {"flag_threshold": 0.66, "escalate_threshold": 0.85}
    live = ConfigVersion.objects.get(agent=agent, is_live=True)
    assert (live.source, live.proposal_id, live.approved_by) == ("proposal", proposal.pk, approver)
    events = list(AuditEvent.objects.filter(agent=agent).order_by("at", "id"))
    assert [e.kind for e in events] == ["proposal.accepted", "config.activated"]
    assert events[0].before == {"flag_threshold": 0.6} and events[0].after == {"flag_threshold": 0.66}
    assert events[0].evidence_entry_ids == ids and events[0].actor == approver
    assert events[0].message == "clear cluster"
    assert events[1].config_version == live


@pytest.mark.django_db
def test_proposal_decide__agent_reads_config_api__new_version_and_new_etag(agent, agent_client, approver):
    first = agent_client.get(f"/api/v1/agents/{agent.agent_id}/config")
    assert first.status_code == 200 and first.json()["thresholds"]["flag_threshold"] == 0.6
    proposal = make_proposal(agent, proposed=0.7)

    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="ok", now=NOW)

    unchanged = agent_client.get(f"/api/v1/agents/{agent.agent_id}/config", HTTP_IF_NONE_MATCH=first["ETag"])
    assert unchanged.status_code == 200
    assert unchanged.json()["version"] == 2 and unchanged.json()["thresholds"]["flag_threshold"] == 0.7
    assert unchanged["ETag"] != first["ETag"]


@pytest.mark.django_db
def test_proposal_decide__modify_beyond_20_percent__refused_naming_the_bound_nothing_changes(agent, approver):
    proposal = make_proposal(agent, proposed=0.66)

    with pytest.raises(GuardrailViolation) as caught:
        proposal_decide(proposal=proposal, actor=approver, decision="modify", value=0.75, rationale="go big", now=NOW)

    assert "more than 20%" in caught.value.message and "0.48 to 0.72" in caught.value.message
    assert caught.value.field == "value"
    assert Proposal.objects.get(pk=proposal.pk).status == "pending"
    assert config_get_live(agent=agent).version == 1
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_proposal_decide__modify_outside_threshold_max__refused_naming_the_maximum(approver):
    agent, _ = make_agent(thresholds=[{"name": "flag_threshold", "value": 0.9, "action": "flag", "max": 0.95}])
    proposal = make_proposal(agent, proposed=0.95)

    with pytest.raises(GuardrailViolation) as caught:
        proposal_decide(proposal=proposal, actor=approver, decision="modify", value=0.99, rationale="x", now=NOW)

    assert "above flag_threshold's maximum 0.95" in caught.value.message


@pytest.mark.django_db
def test_proposal_decide__modify_within_bounds__modified_value_goes_live(agent, approver):
    proposal = make_proposal(agent, proposed=0.7)

    decided = proposal_decide(
        proposal=proposal, actor=approver, decision="modify", value=0.65, rationale="a smaller step", now=NOW
    )

    assert decided.status == "modified" and decided.decided_value == 0.65
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.65
    assert AuditEvent.objects.filter(kind="proposal.modified", after={"flag_threshold": 0.65}).count() == 1


@pytest.mark.django_db
def test_proposal_decide__exactly_20_percent__allowed(agent, approver):
    proposal = make_proposal(agent, proposed=0.72)  # 0.6 * 1.2, not exact in binary floating point

    decided = proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="edge", now=NOW)

    assert decided.status == "accepted"


@pytest.mark.django_db
def test_proposal_decide__reject__nothing_goes_live_rejection_audited(agent, approver):
    proposal = make_proposal(agent)

    decided = proposal_decide(proposal=proposal, actor=approver, decision="reject", rationale="seasonal", now=NOW)

    assert decided.status == "rejected" and decided.decided_value is None
    assert config_get_live(agent=agent).version == 1
    event = AuditEvent.objects.get()
    assert (event.kind, event.message, event.before, event.after) == (
        "proposal.rejected",
        "seasonal",
        {"flag_threshold": 0.6},
        {"flag_threshold": 0.6},
    )


@pytest.mark.django_db
def test_proposal_decide__no_rationale__refused(agent, approver):
    proposal = make_proposal(agent)

    with pytest.raises(ValidationFailed) as caught:
        proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="  ", now=NOW)

    assert caught.value.field == "rationale"
    assert Proposal.objects.get(pk=proposal.pk).status == "pending"


@pytest.mark.django_db
def test_proposal_decide__reviewer__forbidden(agent, reviewer):
    proposal = make_proposal(agent)

    with pytest.raises(NotAnApprover):
        proposal_decide(proposal=proposal, actor=reviewer, decision="accept", rationale="looks fine", now=NOW)

    assert Proposal.objects.get(pk=proposal.pk).status == "pending"


@pytest.mark.django_db
def test_proposal_decide__twice__second_told_who_decided(agent, approver, approver2):
    proposal = make_proposal(agent)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="yes", now=NOW)

    with pytest.raises(AlreadyDecided) as caught:
        proposal_decide(proposal=proposal, actor=approver2, decision="reject", rationale="no", now=NOW)

    assert "already decided by alice (accepted" in caught.value.message
    assert config_get_live(agent=agent).version == 2
    assert ConfigVersion.objects.filter(agent=agent).count() == 2


@pytest.mark.django_db
def test_proposal_create_manual__self_approval_refused__another_approver_accepts(agent, approver, approver2):
    proposal = proposal_create_manual(
        agent=agent,
        threshold_name="flag_threshold",
        proposed_value=0.55,
        rationale="too quiet",
        actor=approver,
        now=NOW,
    )
    assert proposal.status == "pending" and proposal.created_by == approver and proposal.current_value == 0.6

    with pytest.raises(SelfApprovalError):
        proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="mine", now=NOW)
    assert config_get_live(agent=agent).version == 1

    proposal_decide(proposal=proposal, actor=approver2, decision="accept", rationale="agreed", now=NOW)
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.55
    assert list(AuditEvent.objects.values_list("kind", "actor_label")) == [
        ("proposal.created", "alice"),
        ("proposal.accepted", "bob"),
        ("config.activated", "bob"),
    ]


@pytest.mark.django_db
def test_proposal_create_manual__beyond_20_percent__refused(agent, approver):
    with pytest.raises(GuardrailViolation):
        proposal_create_manual(
            agent=agent, threshold_name="flag_threshold", proposed_value=0.9, rationale="x", actor=approver, now=NOW
        )
    assert not Proposal.objects.exists()


@pytest.mark.django_db
def test_proposals_expire__older_than_14_days__expired_and_audited_newer_kept(agent, approver):
    old = make_proposal(agent, now=NOW - timedelta(days=15))
    fresh = make_proposal(agent, now=NOW - timedelta(days=13))

    expired = proposals_expire(now=NOW)

    assert [p.pk for p in expired] == [old.pk]
    assert Proposal.objects.get(pk=old.pk).status == "expired"
    assert Proposal.objects.get(pk=fresh.pk).status == "pending"
    assert AuditEvent.objects.get().kind == "proposal.expired"
    assert proposals_expire(now=NOW) == []
    with pytest.raises(AlreadyDecided):
        proposal_decide(proposal=old, actor=approver, decision="accept", rationale="late", now=NOW)


@pytest.mark.django_db
def test_config_rollback__by_hand_to_previous__values_restored_proposal_rolled_back_audited(
    agent, approver, approver2, django_capture_on_commit_callbacks, mailoutbox
):
    agent.approvers.add(approver, approver2)
    proposal = make_proposal(agent, proposed=0.7)
    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="try", now=NOW)

    with django_capture_on_commit_callbacks(execute=True):
        version = config_rollback(
            agent=agent, to_version=1, actor=approver2, reason="queue got noisy", now=NOW + timedelta(hours=2)
        )

    assert (version.number, version.source, version.values) == (
        3,
        "rollback",
        {"flag_threshold": 0.6, "escalate_threshold": 0.85},
    )
    assert version.rolled_back_version is not None and version.rolled_back_version.number == 2
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.6
    proposal.refresh_from_db()
    assert proposal.status == "rolled_back" and proposal.rolled_back_at == NOW + timedelta(hours=2)
    event = AuditEvent.objects.filter(kind="config.rolled_back").get()
    assert (event.actor_label, event.message, event.threshold_name) == ("bob", "queue got noisy", "flag_threshold")
    assert len(mailoutbox) == 1 and "rolled back v2" in mailoutbox[0].subject


@pytest.mark.django_db
def test_config_rollback__reviewer__forbidden(agent, reviewer, approver):
    proposal_decide(proposal=make_proposal(agent), actor=approver, decision="accept", rationale="y", now=NOW)

    with pytest.raises(NotAnApprover):
        config_rollback(agent=agent, to_version=1, actor=reviewer, reason="no", now=NOW)


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_proposal_decide__two_approvers_at_once__one_wins_other_told():
    agent, _ = make_agent()
    alice = user_with_role("approver", username="alice")
    bob = user_with_role("approver", username="bob")
    proposal = make_proposal(agent, proposed=0.66)
    start = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def decide(user: Any, decision: str) -> None:
        try:
            start.wait(timeout=10)
            outcomes[user.username] = proposal_decide(
                proposal=proposal, actor=user, decision=decision, rationale=f"{user.username} says", now=NOW
            )
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcomes[user.username] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(alice, "accept")),
        threading.Thread(target=decide, args=(bob, "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    winners = [name for name, o in outcomes.items() if isinstance(o, Proposal)]
    losers = [o for o in outcomes.values() if isinstance(o, AlreadyDecided)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert f"already decided by {winners[0]}" in losers[0].message
    stored = Proposal.objects.get(pk=proposal.pk)
    assert stored.decided_by is not None and stored.decided_by.username == winners[0]
    assert AuditEvent.objects.filter(kind__startswith="proposal.").count() == 1
    expected_versions = 2 if stored.status == "accepted" else 1
    assert ConfigVersion.objects.filter(agent=agent).count() == expected_versions
