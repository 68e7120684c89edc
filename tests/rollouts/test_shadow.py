"""Shadow values: the pending proposal's candidate value in the live config, the shadow action the agent client
logs beside every decision, the extra review of the decisions it would change, and the counts on the proposal."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from loopsite_client import Client

from approvals.selectors import error_counts
from approvals.services import proposal_decide
from auditlog.models import Decision
from auditlog.services import decision_log_batch
from rollouts.arms import canary_draw, in_canary
from rollouts.models import Canary
from rollouts.selectors import canary_arm_sizes, shadow_evidence
from rollouts.services import Rollout
from simulation.agent_transport import InProcessTransport
from tests.approvals.conftest import iso
from tests.conftest import client_for
from tests.factories import NOW, entry, make_proposal

pytestmark = pytest.mark.django_db


def agent_client_of(key: str, spool: Path, *, now: Any = NOW + timedelta(days=1)) -> Client:
    """The real agent client, its requests answered in-process by the API's views as of ``now``."""
    return Client(
        "inproc://loopsite",
        key,
        spool,
        transport=InProcessTransport(clock=lambda: now),
        poll_interval=None,
        background=False,
    )


def decide_and_log(client: Client, confidence: float, *, session: str, minute: int, in_arm: bool = False) -> str:
    """What an agent does for one case: decide by the client's rule (in the session's arm when ``in_arm``), log it."""
    action, name, used = client.decide(confidence, session_id=session) if in_arm else client.decide(confidence)
    return client.log(
        {
            "timestamp": iso(NOW + timedelta(minutes=minute)),
            "sessionId": session,
            "decision": {
                "action": action,
                "confidence": confidence,
                "thresholdUsed": used,
                "thresholdName": name,
                "reasoning": "r",
            },
            "context": {"inputHash": f"h{minute}", "features": {}, "matchedRules": []},
        }
    )


def test_the_live_config_carries_the_pending_proposal_as_shadow__and_drops_it_once_decided(
    agent, approver, agent_client, django_capture_on_commit_callbacks
):
    before = agent_client.get("/api/v1/config")
    assert "shadow" not in before.json()
    with django_capture_on_commit_callbacks(execute=True):
        proposal = make_proposal(agent, proposed=0.66)
    during = agent_client.get("/api/v1/config", HTTP_IF_NONE_MATCH=before["ETag"])
    assert during.status_code == 200 and during["ETag"] != before["ETag"]  # a new ETag: the agent reads it
    assert during.json()["shadow"] == {"flag_threshold": 0.66, "proposalId": proposal.pk}
    assert during.json()["thresholds"]["flag_threshold"] == 0.6  # decisions are still made on the live value
    with django_capture_on_commit_callbacks(execute=True):
        proposal_decide(proposal=proposal, actor=approver, decision="reject", rationale="not now", now=NOW)
    after = agent_client.get("/api/v1/config")
    assert "shadow" not in after.json() and after["ETag"] == before["ETag"]


def test_client_logs_shadow_actions__counted_with_reviewers_verdicts_on_the_proposal(
    agent_and_key, approver, tmp_path, django_capture_on_commit_callbacks
):
    agent, key = agent_and_key
    with django_capture_on_commit_callbacks(execute=True):
        proposal = make_proposal(agent, proposed=0.66)  # flag from 0.66 instead of 0.6
    client = agent_client_of(key, tmp_path / "spool")
    assert client.config().shadow is not None
    confidences = [0.62] * 20 + [0.7] * 30 + [0.3] * 50  # 20 would not be flagged under the candidate
    for i, confidence in enumerate(confidences):
        decide_and_log(client, confidence, session=f"s-{i}", minute=i)
    assert client.flush(timeout=5)
    client.close()

    stored = {d.entry_id: d for d in Decision.objects.filter(agent=agent)}
    assert len(stored) == 100
    changed = [d for d in stored.values() if d.shadow_action != d.action]
    assert len(changed) == 20 and {(d.action, d.shadow_action) for d in changed} == {("flag", "auto-resolve")}
    assert all(d.shadow_proposal_id == proposal.pk for d in stored.values())
    # Reviewers answer 15 of the 20: 12 dismissed (the candidate was right), 3 confirmed.
    answers = [("dismiss", 12), ("approve", 3)]
    answered = iter(sorted(d.entry_id for d in changed))
    from auditlog.services import BulkResponse, response_record_bulk

    items = []
    for action, count in answers:
        for _ in range(count):
            raw: dict[str, object] = {"action": action, "respondedAt": iso(NOW + timedelta(hours=3))}
            items.append(BulkResponse(entry_id=next(answered), raw=raw, responder_id="rita"))
    response_record_bulk(items=items, now=NOW + timedelta(hours=3))

    evidence = shadow_evidence(proposal=proposal)
    assert evidence.decisions == 100 and evidence.changed == 20
    [group] = evidence.groups
    assert (group.taken, group.would_take, group.stronger) == ("flag", "auto-resolve", False)
    assert group.labels["dismiss"] == 12 and group.labels["approve"] == 3 and group.open == 5
    assert group.candidate_right == 12 and group.candidate_wrong == 3
    assert (
        "20 decisions taken as flag would have been auto-resolve; reviewers dismissed 12, confirmed 3, 5 open"
        in evidence.summary()
    )

    detail = client_for(approver).get(f"/api/v1/proposals/{proposal.pk}").json()
    assert detail["shadowEvidence"]["changed"] == 20 and detail["shadowEvidence"]["groups"][0]["dismissed"] == 12


def test_decisions_the_shadow_would_fire_on_are_queued_more__and_kept_out_of_the_weighted_estimates(
    agent, settings, django_capture_on_commit_callbacks
):
    settings.LOOPSITE_RULES = {**settings.LOOPSITE_RULES, "SHADOW_REVIEW_RATE": 0.6}
    with django_capture_on_commit_callbacks(execute=True):
        proposal = make_proposal(agent, proposed=0.54)  # flag from 0.54: 0.55..0.6 would be flagged
    bodies: list[object] = [
        entry(
            id=f"e-{i}",
            timestamp=iso(NOW + timedelta(minutes=i)),
            decision={"action": "auto-resolve", "confidence": 0.57, "thresholdUsed": 0.6, "shadowAction": "flag"},
            humanResponse={
                "action": "escalate",
                "respondedAt": iso(NOW + timedelta(minutes=i + 60)),
                "responderId": "r",
            },
        )
        for i in range(1000)
    ]
    assert {r.status for r in decision_log_batch(entries=bodies, now=NOW + timedelta(days=1))} == {"created"}
    reasons = dict.fromkeys(("sampled", "shadow", "none"), 0)
    for d in Decision.objects.filter(agent=agent):
        reasons[d.review_reason] += 1
        assert d.shadow_proposal_id == proposal.pk  # the proposal in shadow when it arrived
    # 10 % sampled as ever; 60 % of the rest queued for the shadow's evidence.
    assert 70 <= reasons["sampled"] <= 130
    assert 0.5 <= reasons["shadow"] / (1000 - reasons["sampled"]) <= 0.7
    counts = error_counts(agent=agent, intervals=[(NOW, NOW + timedelta(days=1))])
    # Every one was answered (imported), but the watchdog's weighted estimate leaves the shadow's extra ones out.
    assert counts.responses == 1000 - reasons["shadow"] and counts.sampled == reasons["sampled"]


def test_a_shadow_action_that_is_not_an_action_is_refused(agent, agent_client):
    body = entry(decision={"shadowAction": "launch"})
    response = agent_client.post("/api/v1/decisions", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["field"] == "decision.shadowAction"
    bad_id = entry(decision={"shadowAction": "flag", "shadowProposalId": "7"})
    response = agent_client.post("/api/v1/decisions", bad_id, format="json")
    assert response.status_code == 400 and response.json()["error"]["field"] == "decision.shadowProposalId"
    assert not Decision.objects.exists()


def test_a_resend_with_its_shadow_action_is_a_duplicate_and_without_it_a_conflict(agent, agent_client):
    body = entry(decision={"shadowAction": "auto-resolve", "shadowProposalId": 3})
    assert agent_client.post("/api/v1/decisions", body, format="json").status_code == 201
    assert agent_client.post("/api/v1/decisions", body, format="json").status_code == 200
    plain = {**body, "decision": {k: v for k, v in body["decision"].items() if not k.startswith("shadow")}}
    assert agent_client.post("/api/v1/decisions", plain, format="json").status_code == 409
    stored = agent_client.get(f"/api/v1/decisions/{body['id']}").json()
    assert stored["decision"]["shadowAction"] == "auto-resolve" and stored["decision"]["shadowProposalId"] == 3


# --- The canary's arms: the same rule in the client and the server --------------------------------------------


def test_the_session_draw_is_the_clients_own(tmp_path):
    from loopsite_client import canary_draw as client_draw

    ids = [f"session-{i}" for i in range(5000)] + ["", "é", "🙂", "a" * 300]
    for version in (2, 7, 1234):
        assert [canary_draw(s, version) for s in ids] == [client_draw(s, version) for s in ids]
    # Pinned: a change of the rule moves sessions between arms under a running canary.
    assert round(canary_draw("session-1", 2), 12) == round(client_draw("session-1", 2), 12)
    share = sum(in_canary(s, share=0.2, version=9) for s in ids[:5000]) / 5000
    assert 0.18 <= share <= 0.22


def test_client_decisions_under_a_canary_land_in_the_arm_the_server_computes__across_restarts(
    agent_and_key, approver, tmp_path
):
    agent, key = agent_and_key
    proposal = make_proposal(agent, proposed=0.66)
    proposal_decide(
        proposal=proposal, actor=approver, decision="accept", rationale="r", now=NOW, canary=Rollout(0.2, 7)
    )
    canary = Canary.objects.select_related("version", "control", "agent").get(proposal=proposal)
    sessions = [f"user-{i}" for i in range(300)]
    for run in range(2):  # the second client is a restart on the same spool folder
        client = agent_client_of(key, tmp_path / "spool")
        for i, session in enumerate(sessions):
            decide_and_log(client, 0.63 if i % 2 else 0.9, session=session, minute=run * 400 + i, in_arm=True)
        assert client.flush(timeout=5)
        client.close()

    rows = Decision.objects.filter(agent=agent).values_list("session_id", "config_version__number", "action")
    assert len(rows) == 600
    for session, version, _action in rows:
        expected = canary.version.number if in_canary(session, share=0.2, version=canary.version.number) else 1
        assert version == expected, session
    # 0.63 is flagged in the control arm (0.6) but not in the canary's (0.66).
    assert {a for s, v, a in rows if v == canary.version.number and s.endswith(("1", "3", "5", "7", "9"))} == {
        "auto-resolve"
    }
    sizes = canary_arm_sizes(canary=canary, now=NOW + timedelta(days=1))
    assert sizes["canary"].off_arm == 0 and sizes["control"].off_arm == 0
    assert sizes["canary"].decisions + sizes["control"].decisions == 600
    assert 40 <= sizes["canary"].sessions <= 80
