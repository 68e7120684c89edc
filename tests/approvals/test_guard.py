"""The one guard of every change (contract rules 3 and 11): per cycle, not per proposal, whoever asks.

The reproductions of issue 9: stacked hand-made proposals walked a threshold from 0.50 to 0.792 and made three
live changes within minutes, and a modify was checked against the value when its proposal was made.
"""

from datetime import timedelta
from typing import Any

import pytest

from approvals.exceptions import AgentLocked, GuardrailViolation
from approvals.guard import allowance, allowed_range, change_check, changes_left
from approvals.lock import agent_config_lock, agent_config_unlock
from approvals.models import AuditEvent
from approvals.services import config_rollback, proposal_create_manual, proposal_decide
from loopsite.exceptions import ValidationFailed
from tests.approvals.conftest import at_once
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from thresholds.models import Agent, ConfigVersion
from thresholds.selectors import config_get_live
from tuner.models import Proposal

HALF = [
    {"name": "flag_threshold", "value": 0.5, "action": "flag"},
    {"name": "escalate_threshold", "value": 0.85, "action": "escalate"},
]


@pytest.fixture
def half(db: None) -> Agent:
    agent, _ = make_agent("screen", thresholds=HALF)
    return agent


@pytest.fixture
def people(db: None) -> dict[str, Any]:
    return {name: user_with_role("approver", username=name) for name in ("alice", "bob", "carol")}


def _manual_then_accept(agent: Agent, value: float, by: Any, decider: Any, at: Any, name: str = "flag_threshold"):
    proposal = proposal_create_manual(
        agent=agent, threshold_name=name, proposed_value=value, rationale="by hand", actor=by, now=at
    )
    return proposal_decide(proposal=proposal, actor=decider, decision="accept", rationale="fine", now=at)


def _live(agent: Agent) -> dict[str, float]:
    return config_get_live(agent=agent).thresholds


@pytest.mark.django_db
def test_stacked_manual_proposals__second_step_past_20_percent_of_cycle_start__refused_nothing_written(half, people):
    _manual_then_accept(half, 0.6, people["alice"], people["bob"], NOW)
    events = AuditEvent.objects.count()

    with pytest.raises(GuardrailViolation) as caught:
        proposal_create_manual(
            agent=half,
            threshold_name="flag_threshold",
            proposed_value=0.72,  # within 20 % of the live 0.6, but 44 % from the cycle's 0.5
            rationale="a little more",
            actor=people["bob"],
            now=NOW + timedelta(minutes=5),
        )

    message = caught.value.message
    assert "more than 20% from 0.5" in message and "this cycle allows 0.4 to 0.6" in message, message
    assert caught.value.field == "proposedValue"
    assert _live(half)["flag_threshold"] == 0.6
    assert Proposal.objects.count() == 1 and AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_tuner_proposal_made_before_another_change__accept_checked_against_cycle_start(half, people):
    stale = make_proposal(half, proposed=0.58)  # made while 0.5 was live
    _manual_then_accept(half, 0.6, people["alice"], people["bob"], NOW + timedelta(minutes=1))
    later = make_proposal(half, proposed=0.7, current=0.6, now=NOW + timedelta(minutes=2))

    with pytest.raises(GuardrailViolation):
        proposal_decide(proposal=later, actor=people["carol"], decision="accept", rationale="x", now=NOW)
    with pytest.raises(GuardrailViolation) as caught:
        proposal_decide(proposal=stale, actor=people["carol"], decision="modify", value=0.61, rationale="x", now=NOW)
    assert "0.4 to 0.6" in caught.value.message
    decided = proposal_decide(
        proposal=stale, actor=people["carol"], decision="modify", value=0.6, rationale="y", now=NOW
    )
    assert decided.decided_value == 0.6 and Proposal.objects.get(pk=later.pk).status == "pending"


@pytest.mark.django_db
def test_a_fourth_change_from_proposals_in_one_cycle__refused_naming_the_cap_and_the_next_cycle(half, people):
    a, b, c = people["alice"], people["bob"], people["carol"]
    _manual_then_accept(half, 0.55, a, b, NOW)
    _manual_then_accept(half, 0.9, b, c, NOW + timedelta(hours=1), name="escalate_threshold")
    _manual_then_accept(half, 0.6, c, a, NOW + timedelta(hours=2))
    assert changes_left(agent=half, now=NOW + timedelta(hours=3)) == 0
    fourth = make_proposal(half, threshold="escalate_threshold", proposed=0.95, now=NOW + timedelta(hours=3))
    before = ConfigVersion.objects.filter(agent=half).count()

    with pytest.raises(GuardrailViolation) as caught:
        proposal_decide(proposal=fourth, actor=a, decision="accept", rationale="one more", now=NOW + timedelta(hours=3))

    assert "3 changes from proposals" in caught.value.message and "at most 3 a cycle" in caught.value.message
    assert "from 2026-03-09" in caught.value.message
    assert ConfigVersion.objects.filter(agent=half).count() == before
    assert Proposal.objects.get(pk=fourth.pk).status == "pending"
    # A rollback restores and is exempt from the cap.
    config_rollback(agent=half, to_version=3, actor=b, reason="undo the last", now=NOW + timedelta(hours=4))
    assert _live(half)["flag_threshold"] == 0.55
    # Next Monday the count starts again, from the values live then.
    monday = NOW + timedelta(days=7)
    decided = proposal_decide(proposal=fourth, actor=a, decision="accept", rationale="new week", now=monday)
    assert decided.status == "accepted" and _live(half)["escalate_threshold"] == 0.95


@pytest.mark.django_db
def test_rollbacks_do_not_count_towards_the_cap(half, people):
    a, b = people["alice"], people["bob"]
    _manual_then_accept(half, 0.55, a, b, NOW)
    config_rollback(agent=half, to_version=1, actor=a, reason="r", now=NOW + timedelta(minutes=1))
    _manual_then_accept(half, 0.55, a, b, NOW + timedelta(minutes=2))
    config_rollback(agent=half, to_version=3, actor=a, reason="r", now=NOW + timedelta(minutes=3))

    assert changes_left(agent=half, now=NOW + timedelta(minutes=4)) == 1


@pytest.mark.django_db
def test_the_cycle_is_the_iso_week_in_the_agents_timezone(people):
    agent, _ = make_agent("ny", thresholds=HALF, timezone="America/New_York", now=NOW - timedelta(days=14))
    sunday_night_local = NOW - timedelta(hours=6)  # Monday 03:00 UTC is Sunday 22:00 in New York
    _manual_then_accept(agent, 0.6, people["alice"], people["bob"], sunday_night_local)

    # In New York it is still last week's cycle until 05:00 UTC: 0.6 is this cycle's base, so 0.72 is allowed.
    assert allowed_range(agent=agent, threshold_name="flag_threshold", now=NOW) == pytest.approx((0.48, 0.72))
    assert changes_left(agent=agent, now=NOW) == 3
    assert changes_left(agent=agent, now=sunday_night_local + timedelta(minutes=1)) == 2


@pytest.mark.django_db
def test_change_check__edges_of_the_20_percent_bound_and_the_min_max(half):
    assert change_check(agent=half, threshold_name="flag_threshold", value=0.6, now=NOW) == 0.6
    assert change_check(agent=half, threshold_name="flag_threshold", value=0.4, now=NOW) == 0.4
    for bad in (0.6001, 0.3999):
        with pytest.raises(GuardrailViolation):
            change_check(agent=half, threshold_name="flag_threshold", value=bad, now=NOW)
    for odd in (float("nan"), float("inf"), True, "0.5", None):
        with pytest.raises(ValidationFailed, match="finite number"):
            change_check(agent=half, threshold_name="flag_threshold", value=odd, now=NOW)
    bounded, _ = make_agent("bounded", thresholds=[{"name": "t", "value": 0.9, "action": "escalate", "max": 0.95}])
    assert allowed_range(agent=bounded, threshold_name="t", now=NOW) == pytest.approx((0.72, 0.95))
    with pytest.raises(GuardrailViolation, match="above t's maximum 0.95"):
        change_check(agent=bounded, threshold_name="t", value=0.951, now=NOW)


# --- the lock ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_locked_agent__accept_and_manual_proposals_refused__rollback_and_reject_still_work(half, people):
    a, b = people["alice"], people["bob"]
    _manual_then_accept(half, 0.55, a, b, NOW)
    pending = make_proposal(half, proposed=0.6)
    other = make_proposal(half, threshold="escalate_threshold", proposed=0.9)
    agent_config_lock(agent=half, actor=a, rationale="converged after eight weeks", now=NOW + timedelta(hours=1))

    with pytest.raises(AgentLocked, match="locked .by alice: converged after eight weeks"):
        proposal_decide(proposal=pending, actor=b, decision="accept", rationale="go", now=NOW + timedelta(hours=2))
    with pytest.raises(AgentLocked):
        proposal_create_manual(
            agent=half, threshold_name="flag_threshold", proposed_value=0.5, rationale="x", actor=b, now=NOW
        )
    half.refresh_from_db()
    assert allowance(agent=half, threshold_name="flag_threshold", now=NOW).locked
    assert Proposal.objects.get(pk=pending.pk).status == "pending"
    proposal_decide(proposal=other, actor=b, decision="reject", rationale="locked", now=NOW + timedelta(hours=2))
    config_rollback(agent=half, to_version=1, actor=b, reason="back", now=NOW + timedelta(hours=3))
    assert _live(half)["flag_threshold"] == 0.5

    agent_config_unlock(agent=half, actor=b, rationale="new product line", now=NOW + timedelta(hours=4))
    proposal_decide(proposal=pending, actor=b, decision="accept", rationale="go", now=NOW + timedelta(hours=5))
    assert _live(half)["flag_threshold"] == 0.6
    kinds = list(AuditEvent.objects.filter(kind__startswith="agent.").values_list("kind", "actor_label", "message"))
    assert kinds == [
        ("agent.locked", "alice", "converged after eight weeks"),
        ("agent.unlocked", "bob", "new product line"),
    ]


@pytest.mark.django_db
def test_lock__twice_conflict__reviewer_forbidden__rationale_required(half, people):
    reviewer = user_with_role("reviewer", username="rita")
    with pytest.raises(Exception, match="not an approver"):
        agent_config_lock(agent=half, actor=reviewer, rationale="x", now=NOW)
    with pytest.raises(Exception, match="rationale is required"):
        agent_config_lock(agent=half, actor=people["alice"], rationale="  ", now=NOW)
    agent_config_lock(agent=half, actor=people["alice"], rationale="done", now=NOW)
    with pytest.raises(Exception, match="locked already"):
        agent_config_lock(agent=half, actor=people["bob"], rationale="again", now=NOW)
    assert AuditEvent.objects.filter(kind="agent.locked").count() == 1


# --- races on PostgreSQL ------------------------------------------------------------------------------------


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_two_approvers_accepting_the_third_and_fourth_change_at_once__only_one_goes_live():
    agent, _ = make_agent("race", thresholds=HALF)
    a, b, c = (user_with_role("approver", username=n) for n in ("alice", "bob", "carol"))
    _manual_then_accept(agent, 0.55, a, b, NOW)
    _manual_then_accept(agent, 0.9, a, b, NOW, name="escalate_threshold")
    third = make_proposal(agent, proposed=0.6, current=0.55)
    fourth = make_proposal(agent, threshold="escalate_threshold", proposed=0.95, current=0.9)

    outcomes = at_once(
        lambda: proposal_decide(proposal=third, actor=b, decision="accept", rationale="b", now=NOW),
        lambda: proposal_decide(proposal=fourth, actor=c, decision="accept", rationale="c", now=NOW),
    )

    assert sum(isinstance(o, Proposal) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, GuardrailViolation) for o in outcomes) == 1, outcomes
    changes = ConfigVersion.objects.filter(agent=agent, source="proposal").count()
    assert changes == 3 and ConfigVersion.objects.filter(agent=agent, is_live=True).count() == 1


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_two_approvers_accepting_two_moves_of_one_threshold_at_once__never_past_20_percent():
    agent, _ = make_agent("race2", thresholds=HALF)
    b, c = (user_with_role("approver", username=n) for n in ("bob", "carol"))
    first = make_proposal(agent, proposed=0.6)
    second = make_proposal(agent, proposed=0.4)

    outcomes = at_once(
        lambda: proposal_decide(proposal=first, actor=b, decision="accept", rationale="b", now=NOW),
        lambda: proposal_decide(proposal=second, actor=c, decision="modify", value=0.45, rationale="c", now=NOW),
    )

    assert all(isinstance(o, Proposal) for o in outcomes), outcomes
    values = [v.values["flag_threshold"] for v in ConfigVersion.objects.filter(agent=agent).order_by("number")]
    assert len(values) == 3 and all(0.4 - 1e-9 <= v <= 0.6 + 1e-9 for v in values), values


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_a_lock_racing_an_accept__either_the_accept_came_first_or_it_was_refused():
    agent, _ = make_agent("race3", thresholds=HALF)
    a, b = (user_with_role("approver", username=n) for n in ("alice", "bob"))
    proposal = make_proposal(agent, proposed=0.6)

    outcomes = at_once(
        lambda: proposal_decide(proposal=proposal, actor=b, decision="accept", rationale="b", now=NOW),
        lambda: agent_config_lock(agent=agent, actor=a, rationale="freeze", now=NOW),
    )

    assert isinstance(outcomes[1], Agent) and Agent.objects.get(pk=agent.pk).is_locked
    lock_event = AuditEvent.objects.get(kind="agent.locked")
    if isinstance(outcomes[0], Proposal):
        activated = AuditEvent.objects.get(kind="config.activated")
        assert activated.pk < lock_event.pk  # the change went live before the lock, never after
    else:
        assert isinstance(outcomes[0], AgentLocked), outcomes
        assert ConfigVersion.objects.filter(agent=agent).count() == 1


@pytest.mark.django_db
def test_allowances__every_threshold_as_allowance_gives_it__the_cycle_read_once(half, people):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from approvals.guard import allowances

    a, b = people["alice"], people["bob"]
    _manual_then_accept(half, 0.55, a, b, NOW)  # one change this cycle: two left, flag's range from 0.5
    later = NOW + timedelta(hours=1)
    one_by_one = {name: allowance(agent=half, threshold_name=name, now=later) for name in _live(half)}
    with CaptureQueriesContext(connection) as alone:
        allowance(agent=half, threshold_name="flag_threshold", now=later)
    with CaptureQueriesContext(connection) as together:
        every = allowances(agent=half, now=later)

    assert every == one_by_one
    assert every["flag_threshold"].changes_left == 2
    assert (every["flag_threshold"].low, every["flag_threshold"].high) == pytest.approx((0.4, 0.6))
    assert len(together) == len(alone)  # the definitions in one read where one threshold took one
