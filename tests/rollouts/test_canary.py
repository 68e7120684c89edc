"""Canary rollouts: started by an approver's accept, served in the live config, judged by the watchdog on the two
arms over the same days, promoted or aborted with the audit rows and emails of any change."""

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command

from approvals.exceptions import CanaryServing, GuardrailViolation
from approvals.models import AuditEvent, VersionWatch
from approvals.services import config_rollback, proposal_decide
from rollouts.models import Canary
from rollouts.services import Rollout, canaries_pass
from tests.conftest import client_for
from tests.factories import NOW, make_proposal, user_with_role
from tests.rollouts.conftest import log_under, sessions_of
from thresholds.models import ConfigVersion
from thresholds.selectors import config_get_live
from tuner.models import Proposal

pytestmark = pytest.mark.django_db


def start_canary(agent: Any, approver: Any, *, proposed: float = 0.66, share: float = 0.2, days: float = 7) -> Canary:
    proposal = make_proposal(agent, proposed=proposed)
    proposal_decide(
        proposal=proposal,
        actor=approver,
        decision="accept",
        rationale="try it on a fifth of sessions first",
        now=NOW,
        canary=Rollout(share=share, days=days),
    )
    return Canary.objects.select_related("version", "control", "proposal").get(proposal=proposal)


def kinds(agent: Any) -> list[str]:
    return list(AuditEvent.objects.filter(agent=agent).order_by("id").values_list("kind", flat=True))


def test_accept_as_canary__serves_its_arm_in_the_live_config(agent, approver, agent_client):
    canary = start_canary(agent, approver)

    body = agent_client.get("/api/v1/config").json()
    assert body["version"] == 1 and body["thresholds"]["flag_threshold"] == 0.6  # the control stays live
    assert body["canary"] == {
        "share": 0.2,
        "values": {"flag_threshold": 0.66, "escalate_threshold": 0.85},
        "version": canary.version.number,
    }
    assert canary.version.number == 2 and canary.version.source == "canary" and not canary.version.is_live
    assert canary.proposal.status == Proposal.Status.CANARY
    assert kinds(agent)[-2:] == ["canary.started", "proposal.accepted"]
    started = AuditEvent.objects.get(agent=agent, kind="canary.started")
    assert started.detail["share"] == 0.2 and started.detail["controlVersion"] == 1
    assert started.after == {"flag_threshold": 0.66}


def test_a_canary_counts_as_a_change__and_no_other_change_goes_live_while_it_serves(agent, approver):
    start_canary(agent, approver)
    other = make_proposal(agent, threshold="escalate_threshold", proposed=0.8)
    with pytest.raises(CanaryServing, match="promote or abort it before another change"):
        proposal_decide(proposal=other, actor=approver, decision="accept", rationale="r", now=NOW)
    # The bound of rule 3 holds for a canary's value too.
    fresh_agent = user_with_role("approver", "bea")
    from tests.factories import make_agent

    second, _ = make_agent("second")
    with pytest.raises(GuardrailViolation, match="more than 20%"):
        proposal_decide(
            proposal=make_proposal(second, proposed=0.9),
            actor=fresh_agent,
            decision="accept",
            rationale="r",
            now=NOW,
            canary=Rollout(share=0.2, days=7),
        )
    assert not Canary.objects.filter(agent=second).exists()


def test_canary_promoted_by_the_watchdog__when_its_arm_is_not_worse(
    agent, approver, django_capture_on_commit_callbacks, mailoutbox
):
    canary = start_canary(agent, approver)
    later = NOW + timedelta(minutes=5)
    control_sessions = sessions_of("control", share=0.2, version=canary.version.number, n=40)
    canary_sessions = sessions_of("canary", share=0.2, version=canary.version.number, n=10)
    log_under(agent, canary.control, prefix="ctl", n=300, errors=90, start=later, sessions=control_sessions)
    log_under(agent, canary.version, prefix="can", n=150, errors=15, start=later, sessions=canary_sessions)
    with django_capture_on_commit_callbacks(execute=True):
        judged = canaries_pass(now=NOW + timedelta(days=2))

    assert [j.outcome for j in judged] == ["promoted"]
    canary.refresh_from_db()
    live = config_get_live(agent=agent)
    assert canary.state == "promoted" and canary.result is not None and canary.result.number == live.version == 3
    assert live.thresholds["flag_threshold"] == 0.66 and live.canary is None
    assert Proposal.objects.get(pk=canary.proposal_id).status == Proposal.Status.ACCEPTED
    assert kinds(agent)[-2:] == ["canary.promoted", "config.activated"]
    promoted = AuditEvent.objects.get(agent=agent, kind="canary.promoted")
    assert promoted.actor_label == "watchdog" and promoted.detail["assessment"]["verdict"] == "good"
    assert promoted.detail["canaryVersion"] == 2 and promoted.detail["controlVersion"] == 1
    # Judged already on the concurrent comparison: the before/after watch does not ask again.
    assert VersionWatch.objects.get(version=canary.result).state == "good"
    assert [m.subject for m in mailoutbox] == ["[loopsite] triage: canary of flag_threshold promoted"]
    assert "v3 is live for every session" in mailoutbox[0].body and "Canary (v2)" in mailoutbox[0].body


def test_canary_aborted_at_once__when_its_arm_is_worse(agent, approver, agent_client):
    canary = start_canary(agent, approver)
    later = NOW + timedelta(minutes=5)
    control_sessions = sessions_of("control", share=0.2, version=canary.version.number, n=40)
    canary_sessions = sessions_of("canary", share=0.2, version=canary.version.number, n=10)
    log_under(agent, canary.control, prefix="ctl", n=300, errors=30, start=later, sessions=control_sessions)
    log_under(agent, canary.version, prefix="can", n=100, errors=45, start=later, sessions=canary_sessions)

    out: list[str] = []
    call_command("run_watchdog", "--now", (NOW + timedelta(hours=20)).isoformat(), stdout=_Sink(out))

    canary.refresh_from_db()
    assert canary.state == "aborted"
    live = config_get_live(agent=agent)
    assert live.version == 3 and live.thresholds["flag_threshold"] == 0.6 and live.canary is None
    abort = ConfigVersion.objects.get(agent=agent, number=3)
    assert abort.source == "rollback" and abort.rolled_back_version_id == canary.version_id
    assert Proposal.objects.get(pk=canary.proposal_id).status == Proposal.Status.ROLLED_BACK
    assert kinds(agent)[-2:] == ["canary.aborted", "config.rolled_back"]
    rolled = AuditEvent.objects.get(agent=agent, kind="config.rolled_back")
    assert rolled.detail["toVersion"] == 1 and rolled.detail["assessment"]["verdict"] == "rollback"
    assert "canary triage v2" in "".join(out) and "now aborted -> v3 live" in "".join(out)
    # The agent's next read drops the canary: every session is back on the control's values.
    assert "canary" not in agent_client.get("/api/v1/config").json()


def test_canary_inconclusive_when_time_runs_out__then_promoted_by_hand(agent, approver, client):
    canary = start_canary(agent, approver, days=1)
    later = NOW + timedelta(minutes=5)
    control_sessions = sessions_of("control", share=0.2, version=canary.version.number, n=40)
    canary_sessions = sessions_of("canary", share=0.2, version=canary.version.number, n=10)
    log_under(agent, canary.control, prefix="ctl", n=60, errors=12, start=later, sessions=control_sessions)
    log_under(agent, canary.version, prefix="can", n=55, errors=12, start=later, sessions=canary_sessions)

    assert [j.outcome for j in canaries_pass(now=NOW + timedelta(hours=12))] == ["running"]
    assert [j.outcome for j in canaries_pass(now=NOW + timedelta(days=1, hours=1))] == ["inconclusive"]
    assert canaries_pass(now=NOW + timedelta(days=2)) == []  # left to an approver
    assert "canary" in config_get_live(agent=agent).__dict__ and config_get_live(agent=agent).canary is not None

    other = user_with_role("approver", "otto")
    api = client_for(other)
    missing = api.post(f"/api/v1/canaries/{canary.pk}/promote", {}, format="json")
    assert missing.status_code == 400 and "rationale" in missing.json()["error"]["field"]
    done = api.post(f"/api/v1/canaries/{canary.pk}/promote", {"rationale": "close enough"}, format="json")
    assert done.status_code == 200, done.json()
    assert done.json()["state"] == "promoted" and done.json()["endedBy"] == "otto"
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.66
    again = api.post(f"/api/v1/canaries/{canary.pk}/abort", {"rationale": "changed my mind"}, format="json")
    assert again.status_code == 409 and "promoted already" in again.json()["error"]["message"]
    # Promoted by hand on inconclusive evidence: the before/after watch still watches it.
    call_command("run_watchdog", stdout=_Sink([]))  # the API acted on the real clock
    assert VersionWatch.objects.get(version__agent=agent, version__number=3).state == "watching"


def test_a_rollback_while_a_canary_serves_aborts_it(agent, approver):
    first = make_proposal(agent, proposed=0.64)
    proposal_decide(proposal=first, actor=approver, decision="accept", rationale="r", now=NOW)
    canary = start_canary(agent, user_with_role("approver", "bea"), proposed=0.62)
    other = user_with_role("approver", "otto")

    config_rollback(agent=agent, to_version=1, actor=other, reason="back to the start", now=NOW + timedelta(hours=1))

    canary.refresh_from_db()
    assert canary.state == "aborted" and canary.ended_label == "rollback"
    assert config_get_live(agent=agent).canary is None
    assert "canary.aborted" in kinds(agent)


def test_canary_decision_through_the_api__bad_canary_is_a_400_naming_it(agent, approver):
    proposal = make_proposal(agent, proposed=0.66)
    api = client_for(approver)
    url = f"/api/v1/proposals/{proposal.pk}/decision"
    for bad, field in (
        ({"share": 0.9}, "canary.share"),
        ({"share": "x"}, "canary.share"),
        ({"days": 0}, "canary.days"),
        ({"size": 1}, "canary"),
        ("yes", "canary"),
    ):
        response = api.post(url, {"decision": "accept", "rationale": "r", "canary": bad}, format="json")
        assert response.status_code == 400 and response.json()["error"]["field"] == field, (bad, response.json())
    assert Proposal.objects.get(pk=proposal.pk).status == Proposal.Status.PENDING
    ok = api.post(url, {"decision": "accept", "rationale": "r", "canary": True}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "canary"
    detail = api.get(f"/api/v1/proposals/{proposal.pk}").json()
    assert detail["canary"]["share"] == 0.2 and detail["canary"]["state"] == "running"
    assert detail["canary"]["arms"]["canary"] == {"decisions": 0, "sessions": 0, "offArm": 0}


class _Sink:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, text: str) -> None:
        self.into.append(text)

    def flush(self) -> None:
        pass


# --- Races on PostgreSQL: one canary ends once ----------------------------------------------------------------


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_the_watchdog_promoting_while_an_approver_aborts__exactly_one_ends_it(approver):
    from tests.approvals.conftest import at_once
    from tests.factories import make_agent

    agent, _ = make_agent()
    canary = start_canary(agent, approver)
    later = NOW + timedelta(minutes=5)
    log_under(
        agent,
        canary.control,
        prefix="ctl",
        n=300,
        errors=90,
        start=later,
        sessions=sessions_of("control", share=0.2, version=canary.version.number, n=40),
    )
    log_under(
        agent,
        canary.version,
        prefix="can",
        n=150,
        errors=15,
        start=later,
        sessions=sessions_of("canary", share=0.2, version=canary.version.number, n=10),
    )
    otto = user_with_role("approver", "otto")
    from rollouts.services import canary_abort

    outcomes = at_once(
        lambda: canaries_pass(now=NOW + timedelta(days=2)),
        lambda: canary_abort(canary=canary, now=NOW + timedelta(days=2), actor=otto, rationale="stop it"),
        lambda: canaries_pass(now=NOW + timedelta(days=2)),
    )

    canary.refresh_from_db()
    assert canary.state in ("promoted", "aborted")
    # One new live version, one end in the audit trail, whoever won; the losers saw it ended.
    assert ConfigVersion.objects.filter(agent=agent, number__gt=2).count() == 1
    ends = AuditEvent.objects.filter(agent=agent, kind__in=["canary.promoted", "canary.aborted"]).count()
    assert ends == 1, outcomes
    lost = outcomes[1]
    assert canary.state == "aborted" or "promoted already" in str(getattr(lost, "message", lost)), outcomes


def test_a_canary_arm_is_skipped_by_rollbacks__never_a_target_nor_the_version_before(agent, approver):
    canary = start_canary(agent, approver)
    otto = user_with_role("approver", "otto")
    from approvals.exceptions import RollbackRefused
    from rollouts.services import canary_promote

    canary_promote(canary=canary, now=NOW + timedelta(hours=1), actor=otto, rationale="looks fine")
    assert config_get_live(agent=agent).version == 3  # v2 is the canary arm, v3 its promotion

    with pytest.raises(RollbackRefused, match="v2 is a canary arm"):
        config_rollback(agent=agent, to_version=2, actor=otto, reason="r", now=NOW + timedelta(hours=2))
    back = config_rollback(agent=agent, to_version=1, actor=otto, reason="undo", now=NOW + timedelta(hours=2))
    # v1 was live just before v3: a rollback, not a manual change, with v1's values.
    assert back.source == "rollback" and back.values["flag_threshold"] == 0.6
    assert Proposal.objects.get(pk=canary.proposal_id).status == Proposal.Status.ROLLED_BACK


def test_a_manual_change_back_to_older_values_while_a_canary_serves_aborts_it(agent, approver):
    for value in (0.63, 0.66):
        proposal_decide(
            proposal=make_proposal(agent, proposed=value), actor=approver, decision="accept", rationale="r", now=NOW
        )
    canary = start_canary(agent, user_with_role("approver", "bea"), proposed=0.68)
    otto = user_with_role("approver", "otto")

    manual = config_rollback(agent=agent, to_version=1, actor=otto, reason="start over", now=NOW + timedelta(hours=1))

    assert manual.source == "manual"
    canary.refresh_from_db()
    assert canary.state == "aborted" and canary.result_id == manual.pk
    assert config_get_live(agent=agent).canary is None
