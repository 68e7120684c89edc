import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from approvals.lock import agent_config_lock
from approvals.models import AuditEvent, VersionWatch
from approvals.selectors import ErrorCounts
from approvals.services import config_rollback, proposal_decide
from approvals.watchdog import watch_assess, watch_get, watchdog_assess, watchdog_run
from auditlog.models import Decision
from tests.approvals.conftest import log_responded
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from thresholds.models import ConfigVersion
from thresholds.selectors import config_get_live
from tuner.models import Proposal

CHANGED_AT = NOW - timedelta(days=3)


def assess(new: tuple[int, int], base: tuple[int, int], min_responses: int = 50) -> Any:
    return watchdog_assess(
        new=ErrorCounts(*new), base=ErrorCounts(*base), min_responses=min_responses, tolerance=0.10, alpha=0.05
    )


def test_watchdog_assess__too_few_responses__waiting():
    assert assess((49, 49), (30, 100)).verdict == "waiting"


def test_watchdog_assess__rise_within_noise__ok():
    result = assess((21, 60), (30, 100))  # 35 % against a 33 % limit: inside the noise of 60 responses
    assert result.verdict == "ok" and result.p_value is not None and result.p_value > 0.05


def test_watchdog_assess__clear_rise__rollback():
    result = assess((40, 60), (30, 100))
    assert result.verdict == "rollback" and result.z is not None and result.z > 3
    assert result.limit_rate == pytest.approx(0.33)


def test_watchdog_assess__rise_under_tolerance_with_much_data__ok():
    # 32 % against a 30 % baseline: worse, but not by more than 10 % of the baseline, however many responses.
    assert assess((3200, 10000), (3000, 10000)).verdict == "ok"


def test_watchdog_assess__no_baseline_responses__no_verdict():
    assert assess((60, 60), (0, 0)).verdict == "no_baseline"


def _changed_agent(approvers: list[Any] | None = None) -> tuple[Any, Proposal]:
    """An agent with 100 baseline responses (30 % errors) under v1 in the 2 weeks before v2 went live."""
    agent, _ = make_agent(now=NOW - timedelta(days=21))
    if approvers:
        agent.approvers.add(*approvers)
    log_responded(agent, prefix="base", n=100, errors=30, start=CHANGED_AT - timedelta(days=10))
    proposal = make_proposal(agent, proposed=0.7, now=CHANGED_AT - timedelta(hours=1))
    decider = approvers[0] if approvers else user_with_role("approver", username="alice")
    proposal_decide(proposal=proposal, actor=decider, decision="accept", rationale="cluster", now=CHANGED_AT)
    return agent, proposal


@pytest.mark.django_db
def test_watchdog_run__before_enough_responses__no_rollback():
    agent, proposal = _changed_agent()
    log_responded(agent, prefix="new", n=49, errors=49, start=CHANGED_AT + timedelta(hours=1))

    assert watchdog_run(now=NOW) == []
    assert config_get_live(agent=agent).version == 2
    assert Proposal.objects.get(pk=proposal.pk).status == "accepted"


@pytest.mark.django_db
def test_watchdog_run__noise__no_rollback():
    agent, proposal = _changed_agent()
    log_responded(agent, prefix="new", n=60, errors=21, start=CHANGED_AT + timedelta(hours=1))

    assert watchdog_run(now=NOW) == []
    assert config_get_live(agent=agent).version == 2


@pytest.mark.django_db
def test_watchdog_run__real_rise__rolled_back_audited_and_approvers_emailed(
    approver, approver2, django_capture_on_commit_callbacks, mailoutbox
):
    agent, proposal = _changed_agent([approver, approver2])
    log_responded(agent, prefix="new", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1), error_action="escalate")

    with django_capture_on_commit_callbacks(execute=True):
        rolled = watchdog_run(now=NOW)

    assert [(v.number, v.source, v.rolled_back_version_id is not None) for v in rolled] == [(3, "rollback", True)]
    assert rolled[0].rolled_back_version == ConfigVersion.objects.get(agent=agent, number=2)
    live = config_get_live(agent=agent)
    assert live.version == 3 and live.thresholds == {"flag_threshold": 0.6, "escalate_threshold": 0.85}
    proposal.refresh_from_db()
    assert proposal.status == "rolled_back" and proposal.rolled_back_at == NOW
    event = AuditEvent.objects.get(kind="config.rolled_back")
    assert event.actor_label == "watchdog" and event.proposal == proposal
    assert event.before == {"flag_threshold": 0.7, "escalate_threshold": 0.85}
    assert event.after == {"flag_threshold": 0.6, "escalate_threshold": 0.85}
    assert "error rate 66.7% (40/60)" in event.message and "baseline 30.0% (30/100)" in event.message

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert sorted(mail.to) == ["alice@example.com", "bob@example.com"]
    assert mail.subject == "[loopsite] triage: rolled back v2 (flag_threshold 0.7 -> 0.6)"
    assert "Responses since v2 went live: 60, errors 40" in mail.body
    assert (
        "Baseline (v1, the last earlier version with enough responses, 2 weeks before the change): 100 responses, "
        "errors 30" in mail.body
    )
    assert "rolled back by watchdog" in mail.body and f"proposal #{proposal.pk}" in mail.body
    assert "http://127.0.0.1:8000/audit/?agent=triage" in mail.body


@pytest.mark.django_db
def test_watchdog_run__scoped_to_another_agent__leaves_this_one_alone():
    agent, _ = _changed_agent()
    log_responded(agent, prefix="new", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1))
    other, _ = make_agent("other-agent", now=NOW - timedelta(days=21))

    assert watchdog_run(now=NOW, agent=other) == []
    assert config_get_live(agent=agent).version == 2
    assert [v.agent for v in watchdog_run(now=NOW, agent=agent)] == [agent]


@pytest.mark.django_db
def test_watchdog_run__second_pass__nothing_more_to_roll_back():
    agent, _ = _changed_agent()
    log_responded(agent, prefix="new", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1))

    assert len(watchdog_run(now=NOW)) == 1
    assert watchdog_run(now=NOW + timedelta(hours=1)) == []
    assert ConfigVersion.objects.filter(agent=agent).count() == 3


@pytest.mark.django_db
def test_run_watchdog_command__prints_what_it_rolled_back(capsys):
    agent, _ = _changed_agent()
    log_responded(agent, prefix="new", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1))

    call_command("run_watchdog", "--now", "2026-03-02T09:00:00Z")

    out = capsys.readouterr().out
    assert "watching triage v2" in out and "rollback" in out
    assert "rolled back triage v2 -> v3" in out


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_watchdog_run__two_runs_overlap__exactly_one_rollback():
    agent, proposal = _changed_agent()
    log_responded(agent, prefix="new", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1))
    start = threading.Barrier(2)
    results: list[Any] = []

    def run() -> None:
        try:
            start.wait(timeout=10)
            results.append(watchdog_run(now=NOW))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(len(r) for r in results) == [0, 1], results
    assert ConfigVersion.objects.filter(agent=agent, source="rollback").count() == 1
    assert AuditEvent.objects.filter(kind="config.rolled_back").count() == 1
    assert Proposal.objects.get(pk=proposal.pk).status == "rolled_back"


# --- Every recent change under watch (issue 9, part 3) ----------------------------------------------------------

V1_VALUES = {"flag_threshold": 0.6, "escalate_threshold": 0.85}


def _agent_with_baseline(*, n: int = 100, errors: int = 10) -> Any:
    """An agent whose v1 has ``n`` responses (``errors`` of them errors) in the 2 weeks before CHANGED_AT."""
    agent, _ = make_agent(now=NOW - timedelta(days=21))
    log_responded(agent, prefix="base", n=n, errors=errors, start=CHANGED_AT - timedelta(days=10))
    return agent


def _accept(agent: Any, *, threshold: str, proposed: float, at: Any) -> Proposal:
    proposal = make_proposal(agent, threshold=threshold, proposed=proposed, now=at - timedelta(minutes=30))
    decider = user_with_role("approver", username="alice")
    proposal_decide(proposal=proposal, actor=decider, decision="accept", rationale="looks right", now=at)
    return proposal


def _as_sampled(prefix: str) -> int:
    """Make logged decisions weakest-action ones that the agent's sample drew for review."""
    return Decision.objects.filter(entry_id__startswith=prefix).update(
        action="auto-resolve", review_reason="sampled", queued=True
    )


def _states(agent: Any) -> dict[int, str]:
    return {w.version.number: w.state for w in VersionWatch.objects.filter(agent=agent).select_related("version")}


@pytest.mark.django_db
def test_watchdog_run__back_to_back_accepts_then_a_bad_week__both_rolled_back_to_v1(
    django_capture_on_commit_callbacks, mailoutbox
):
    # The reported bug: v3 went live a minute after v2, so v2 has no responses; v3 was compared with v2 and the
    # watchdog answered no_baseline for ever while the error rate went from 10 % to 60 %.
    agent = _agent_with_baseline(errors=10)
    first = _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT)
    second = _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT + timedelta(minutes=1))
    log_responded(agent, prefix="bad", n=100, errors=60, start=CHANGED_AT + timedelta(hours=1), error_action="escalate")

    with django_capture_on_commit_callbacks(execute=True):
        rolled = watchdog_run(now=NOW)

    assert [(v.number, v.source) for v in rolled] == [(4, "rollback")]
    live = config_get_live(agent=agent)
    assert live.version == 4 and live.thresholds == V1_VALUES
    assert _states(agent) == {2: "rolled_back", 3: "rolled_back"}
    assert {w.rolled_back_by_id for w in VersionWatch.objects.filter(agent=agent)} == {rolled[0].pk}
    baseline = VersionWatch.objects.get(version__number=2).baseline
    assert baseline is not None and baseline.number == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("rolled_back", "rolled_back")
    event = AuditEvent.objects.get(kind="config.rolled_back")
    assert event.actor_label == "watchdog" and event.before == {"flag_threshold": 0.7, "escalate_threshold": 0.88}
    assert event.after == V1_VALUES
    assert event.detail["undoneVersions"] == [2, 3] and event.detail["toVersion"] == 1
    assert event.detail["assessment"]["baseline_version"] == 1 and event.detail["assessment"]["version"] == 2
    assert "error rate 60.0% (60/100) since v2 against v1's baseline 10.0% (10/100)" in event.message
    assert len(mailoutbox) == 1 and "Responses since v2 went live: 100, errors 60" in mailoutbox[0].body
    assert watchdog_run(now=NOW + timedelta(hours=1)) == []


@pytest.mark.django_db
def test_watchdog_run__earlier_change_still_judged_after_a_later_one_lands():
    agent = _agent_with_baseline(errors=10)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="v2", n=60, errors=36, start=CHANGED_AT + timedelta(hours=1))
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT + timedelta(days=1))
    log_responded(agent, prefix="v3", n=60, errors=36, start=CHANGED_AT + timedelta(days=1, hours=1))
    # v3 on its own is no worse than v2 (its baseline: 60 responses of its own), which the old watchdog, watching
    # only the live version, settled for. v2 is still judged, since its activation, against v1.
    v3_alone, baseline = watch_assess(watch=watch_get(agent=agent, number=3, now=NOW), now=NOW)
    assert baseline is not None and baseline.number == 2 and v3_alone.verdict == "ok"

    rolled = watchdog_run(now=NOW)

    assert len(rolled) == 1 and config_get_live(agent=agent).thresholds == V1_VALUES
    assert _states(agent) == {2: "rolled_back", 3: "rolled_back"}
    event = AuditEvent.objects.get(kind="config.rolled_back")
    assert event.detail["watchedVersion"] == 2 and event.detail["assessment"]["new_responses"] == 120


@pytest.mark.django_db
def test_watchdog_run__a_good_earlier_change_is_restored_not_the_baseline():
    agent = _agent_with_baseline(errors=30)
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT - timedelta(days=2))
    log_responded(agent, prefix="v2", n=100, errors=10, start=CHANGED_AT - timedelta(days=2) + timedelta(hours=1))
    watchdog_run(now=CHANGED_AT - timedelta(minutes=5))
    assert _states(agent) == {2: "good"}
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="v3", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1))

    (rollback,) = watchdog_run(now=NOW)

    assert config_get_live(agent=agent).thresholds == {"flag_threshold": 0.6, "escalate_threshold": 0.88}
    assert _states(agent) == {2: "good", 3: "rolled_back"}
    assert AuditEvent.objects.get(kind="config.rolled_back").detail["toVersion"] == 2


def test_watchdog_assess__sampled_misses_weighted__rollback_where_unweighted_is_ok():
    # 100 fired and 100 sampled weakest-action responses on each side; the sample rate is 10 %, so each sampled
    # one stands for 10 decisions. The change cut false alarms (10 -> 5) but missed more (2 -> 12 escalations).
    base = ErrorCounts(errors=12, responses=200, weighted_errors=10 + 2 * 10, weight=1100, weight_sq=10100, sampled=100)
    new = ErrorCounts(errors=17, responses=200, weighted_errors=5 + 12 * 10, weight=1100, weight_sq=10100, sampled=100)

    weighted = watchdog_assess(new=new, base=base, min_responses=50, tolerance=0.10, alpha=0.05)
    unweighted = assess((17, 200), (12, 200))

    assert unweighted.verdict == "ok"  # 8.5 % against 6 %: within the noise of 200 responses
    assert weighted.verdict == "rollback" and weighted.p_value is not None and weighted.p_value < 0.01
    assert weighted.new_rate == pytest.approx(125 / 1100) and weighted.base_rate == pytest.approx(30 / 1100)
    assert weighted.new_effective_n == pytest.approx(1100**2 / 10100)  # Kish: (sum w)^2 / sum w^2


@pytest.mark.django_db
def test_watchdog_run__sampled_misses_weigh_1_over_sample_rate__rolled_back():
    agent, _ = make_agent(now=NOW - timedelta(days=21), review_sample_rate=0.1)
    log_responded(agent, prefix="base-fired", n=100, errors=10, start=CHANGED_AT - timedelta(days=10))
    log_responded(
        agent, prefix="base-sampled", n=100, errors=2, start=CHANGED_AT - timedelta(days=9), error_action="escalate"
    )
    _as_sampled("base-sampled")
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="new-fired", n=100, errors=5, start=CHANGED_AT + timedelta(hours=1))
    log_responded(
        agent, prefix="new-sampled", n=100, errors=12, start=CHANGED_AT + timedelta(days=1), error_action="escalate"
    )
    _as_sampled("new-sampled")

    rolled = watchdog_run(now=NOW)

    assert len(rolled) == 1 and config_get_live(agent=agent).thresholds == V1_VALUES
    figures = AuditEvent.objects.get(kind="config.rolled_back").detail["assessment"]
    assert (figures["new_errors"], figures["new_responses"], figures["new_sampled"]) == (17, 200, 100)
    assert figures["new_rate"] == pytest.approx(125 / 1100) and figures["sample_weight"] == pytest.approx(10.0)


def test_watchdog_assess__good__significantly_below_the_limit_at_its_boundary():
    # Baseline 30 % of 1,000 (limit 33 %): 294 errors in 1,000 is significantly below it (p = 0.047), 295 not.
    good = assess((294, 1000), (300, 1000))
    assert good.verdict == "good" and good.p_good is not None and good.p_good < 0.05
    edge = assess((295, 1000), (300, 1000))
    assert edge.verdict == "ok" and edge.p_good is not None and edge.p_good > 0.05
    # However clear, nothing is judged good before the minimum of responses.
    assert assess((0, 49), (300, 1000)).verdict == "waiting"
    assert assess((0, 50), (300, 1000)).verdict == "good"


@pytest.mark.django_db
def test_watchdog_run__clearly_better__judged_good_audited_and_no_longer_watched():
    agent = _agent_with_baseline(errors=30)
    proposal = _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="new", n=100, errors=10, start=CHANGED_AT + timedelta(hours=1))

    assert watchdog_run(now=NOW) == []

    watch = VersionWatch.objects.get(agent=agent)
    assert (watch.state, watch.judged_label, watch.judged_at) == ("good", "watchdog", NOW)
    assert watch.assessment["verdict"] == "good" and watch.baseline is not None and watch.baseline.number == 1
    event = AuditEvent.objects.get(kind="watch.good")
    assert event.actor_label == "watchdog" and event.config_version == watch.version and event.proposal == proposal
    # Judged good: later data do not bring it back under watch.
    log_responded(agent, prefix="later", n=100, errors=90, start=CHANGED_AT + timedelta(days=1))
    assert watchdog_run(now=NOW + timedelta(hours=1)) == []
    assert config_get_live(agent=agent).version == 2


@pytest.mark.django_db
def test_watchdog_run__window_ends_without_a_verdict__inconclusive_at_its_boundary():
    agent = _agent_with_baseline(errors=30)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="new", n=60, errors=21, start=CHANGED_AT + timedelta(hours=1))
    ends = CHANGED_AT + timedelta(days=14)

    watchdog_run(now=ends - timedelta(seconds=1))
    assert _states(agent) == {2: "watching"}
    assert VersionWatch.objects.get(agent=agent).watch_until == ends

    watchdog_run(now=ends)

    watch = VersionWatch.objects.get(agent=agent)
    assert watch.state == "inconclusive" and watch.assessment["verdict"] == "ok"
    event = AuditEvent.objects.get(kind="watch.inconclusive")
    assert event.message.startswith("watch window ended without a verdict")
    assert event.proposal is not None and event.proposal.status == "accepted"


@pytest.mark.django_db
def test_watchdog_run__no_baseline__watching_then_inconclusive():
    agent, _ = make_agent(now=CHANGED_AT - timedelta(days=1))  # no responses before the change
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="new", n=60, errors=50, start=CHANGED_AT + timedelta(hours=1))

    assert watchdog_run(now=NOW) == []
    assert VersionWatch.objects.get(agent=agent).assessment["verdict"] == "no_baseline"
    watchdog_run(now=CHANGED_AT + timedelta(days=14))
    assert _states(agent) == {2: "inconclusive"}


@pytest.mark.django_db
def test_watchdog_run__old_changes_are_not_watched_recent_ones_are():
    agent = _agent_with_baseline()
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=NOW - timedelta(days=15))
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=NOW - timedelta(days=13))

    watchdog_run(now=NOW)

    assert _states(agent) == {3: "watching"}


@pytest.mark.django_db
def test_watchdog_run__agent_locked__still_rolls_back(approver):
    agent = _agent_with_baseline(errors=10)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    agent_config_lock(agent=agent, actor=approver, rationale="converged", now=CHANGED_AT + timedelta(minutes=5))
    log_responded(agent, prefix="bad", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1))

    assert len(watchdog_run(now=NOW)) == 1
    assert config_get_live(agent=agent).thresholds == V1_VALUES


@pytest.mark.django_db
def test_watchdog_run__rolled_back_by_hand_elsewhere__watch_follows(approver2):
    agent = _agent_with_baseline(errors=10)
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT + timedelta(hours=1))
    watchdog_run(now=CHANGED_AT + timedelta(hours=2))
    assert _states(agent) == {2: "watching", 3: "watching"}

    config_rollback(
        agent=agent, to_version=1, actor=approver2, reason="both wrong", now=CHANGED_AT + timedelta(hours=3)
    )
    watchdog_run(now=CHANGED_AT + timedelta(hours=4))

    assert _states(agent) == {2: "rolled_back", 3: "rolled_back"}
    assert {w.judged_label for w in VersionWatch.objects.filter(agent=agent)} == {"bob"}
    assert set(Proposal.objects.filter(agent=agent).values_list("status", flat=True)) == {"rolled_back"}


@pytest.mark.django_db
def test_run_watchdog_command__back_to_back__prints_both_undone(capsys):
    agent = _agent_with_baseline(errors=10)
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT + timedelta(minutes=1))
    log_responded(agent, prefix="bad", n=100, errors=60, start=CHANGED_AT + timedelta(hours=1))

    call_command("run_watchdog", "--now", "2026-03-02T09:00:00Z")

    out = capsys.readouterr().out
    assert "watching triage v2" in out and "rollback, now rolled_back" in out
    assert "rolled back triage v2, v3 -> v4" in out
