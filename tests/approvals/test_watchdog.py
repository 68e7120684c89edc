import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from approvals.models import AuditEvent
from approvals.selectors import ErrorCounts
from approvals.services import proposal_decide
from approvals.watchdog import watchdog_assess, watchdog_run
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
    assert "Responses under v2: 60, errors 40" in mail.body
    assert "Baseline (previous version, 2 weeks before the change): 100 responses, errors 30" in mail.body
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
