"""The guard (contract rule 3 and the bounds) pinned at each edge: a threshold's minimum and maximum and just past
each, exactly 20 % and just past, the third change of a cycle and the fourth, NaN, infinity and a bool from every
path that takes a value (the pages included), and the allowed range the pages show against what the guard
accepts."""

import json
import math
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from approvals.exceptions import AgentLocked, GuardrailViolation
from approvals.guard import (
    DECIDE,
    EPS,
    agents_in_scope,
    allowance,
    allowed_range,
    approver_refusal,
    change_check,
    changes_left,
    cycle_state,
    designation_check,
    rationale_check,
    scope_note,
)
from approvals.lock import agent_config_lock
from loopsite.exceptions import ValidationFailed
from loopsite.rules import rule
from tests.conftest import client_for
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition
from thresholds.selectors import config_get_live
from thresholds.services import config_version_activate

# flag_threshold at 0.55 within [0.5, 0.9]: 20 % is 0.44 to 0.66, so the minimum binds below and 20 % above.
# escalate_threshold at 0.85 within [0.1, 0.95]: 20 % is 0.68 to 1.02, so the maximum binds above.
NEAR_BOUNDS = [
    {"name": "flag_threshold", "value": 0.55, "action": "flag", "min": 0.5, "max": 0.9},
    {"name": "escalate_threshold", "value": 0.85, "action": "escalate", "min": 0.1, "max": 0.95},
]
NOT_A_NUMBER = [math.nan, math.inf, -math.inf, True, False, "0.6", None]


@pytest.fixture
def bounded(db: None) -> Agent:
    agent, _ = make_agent("bounded", thresholds=NEAR_BOUNDS)
    return agent


def check(agent: Agent, value: object, name: str = "flag_threshold") -> float:
    return change_check(agent=agent, threshold_name=name, value=value, now=NOW)


def refusal(agent: Agent, value: object, name: str = "flag_threshold") -> Any:
    with pytest.raises((GuardrailViolation, ValidationFailed)) as caught:
        check(agent, value, name)
    return caught.value


@pytest.mark.django_db
def test_change_check__exactly_the_minimum__accepted(bounded: Agent) -> None:
    assert check(bounded, 0.5) == 0.5


@pytest.mark.django_db
def test_change_check__within_float_noise_of_the_minimum__accepted(bounded: Agent) -> None:
    assert check(bounded, 0.5 - 1e-10) == pytest.approx(0.5)


@pytest.mark.django_db
def test_change_check__just_below_the_minimum__refused_naming_it(bounded: Agent) -> None:
    error = refusal(bounded, 0.4999)
    assert isinstance(error, GuardrailViolation)
    assert (error.field, error.message) == ("value", "value 0.4999 is below flag_threshold's minimum 0.5")


@pytest.mark.django_db
def test_change_check__exactly_the_maximum__accepted(bounded: Agent) -> None:
    assert check(bounded, 0.95, "escalate_threshold") == 0.95


@pytest.mark.django_db
def test_change_check__just_above_the_maximum__refused_naming_it(bounded: Agent) -> None:
    error = refusal(bounded, 0.9501, "escalate_threshold")
    assert isinstance(error, GuardrailViolation)
    assert error.message == "value 0.9501 is above escalate_threshold's maximum 0.95"


@pytest.mark.django_db
def test_change_check__exactly_twenty_percent_up__accepted_just_past__refused(bounded: Agent) -> None:
    assert check(bounded, 0.55 * 1.2) == pytest.approx(0.66)
    error = refusal(bounded, 0.6601)
    assert isinstance(error, GuardrailViolation)
    assert error.message == (
        "value 0.6601 is more than 20% from 0.55, flag_threshold's value at the start of this cycle (the week of "
        "2026-03-02); this cycle allows 0.5 to 0.66"
    )


@pytest.mark.django_db
def test_change_check__exactly_twenty_percent_down__accepted_just_past__refused(half_agent: Agent) -> None:
    assert check(half_agent, 0.4) == pytest.approx(0.4)
    assert isinstance(refusal(half_agent, 0.3999), GuardrailViolation)


@pytest.fixture
def half_agent(db: None) -> Agent:
    agent, _ = make_agent("half", thresholds=[{"name": "flag_threshold", "value": 0.5, "action": "flag"}])
    return agent


@pytest.mark.django_db
@pytest.mark.parametrize("value", NOT_A_NUMBER)
def test_change_check__not_a_finite_number__refused(bounded: Agent, value: object) -> None:
    error = refusal(bounded, value)
    assert isinstance(error, ValidationFailed) and not isinstance(error, GuardrailViolation)
    assert (error.field, error.message) == ("value", "value must be a finite number")


@pytest.mark.django_db
def test_change_check__an_int__accepted_as_a_float(db: None) -> None:
    agent, _ = make_agent("whole", thresholds=[{"name": "t", "value": 1.0, "action": "flag", "max": 2.0}])
    value = change_check(agent=agent, threshold_name="t", value=1, now=NOW)
    assert value == 1.0 and type(value) is float


@pytest.mark.django_db
def test_change_check__named_field__named_in_the_refusal(bounded: Agent) -> None:
    with pytest.raises(ValidationFailed) as caught:
        change_check(agent=bounded, threshold_name="flag_threshold", value=math.nan, now=NOW, field="proposedValue")
    assert (caught.value.field, caught.value.message) == ("proposedValue", "proposedValue must be a finite number")


@pytest.mark.django_db
def test_change_check__unknown_threshold__refused(bounded: Agent) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check(bounded, 0.6, "nope")
    assert (caught.value.field, caught.value.message) == ("thresholdName", "bounded has no threshold 'nope'")


@pytest.mark.django_db
def test_change_check__locked__refused_saying_by_whom(bounded: Agent) -> None:
    alice = user_with_role("approver", username="alice")
    agent_config_lock(agent=bounded, actor=alice, rationale="audit week", now=NOW)
    bounded.refresh_from_db()
    with pytest.raises(AgentLocked) as caught:
        check(bounded, 0.55)
    assert caught.value.message == (
        "bounded's config is locked (by alice: audit week); only a rollback changes it until it is unlocked"
    )


def proposal_versions(agent: Agent, count: int, *, start: Any = NOW) -> None:
    """``count`` versions made live from proposals this cycle (the values stay within the guard)."""
    for i in range(count):
        values = {"flag_threshold": 0.55 + 0.01 * (i % 2), "escalate_threshold": 0.85}
        config_version_activate(
            agent=agent, values=values, source=ConfigVersion.Source.PROPOSAL, now=start + timedelta(minutes=i)
        )


@pytest.mark.django_db
def test_change_check__two_changes_this_cycle__a_third_accepted(bounded: Agent) -> None:
    proposal_versions(bounded, 2)
    assert check(bounded, 0.6) == 0.6
    assert changes_left(agent=bounded, now=NOW) == 1


@pytest.mark.django_db
def test_change_check__three_changes_this_cycle__the_fourth_refused(bounded: Agent) -> None:
    proposal_versions(bounded, 3)
    error = refusal(bounded, 0.6)
    assert isinstance(error, GuardrailViolation)
    assert error.message == (
        "bounded has had 3 changes from proposals go live this cycle (the week of 2026-03-02); at most 3 a cycle. "
        "The next may go live from 2026-03-09."
    )
    assert changes_left(agent=bounded, now=NOW) == 0


@pytest.mark.django_db
def test_changes_left__more_changes_than_the_cap__zero_not_negative(bounded: Agent) -> None:
    proposal_versions(bounded, 4)
    assert changes_left(agent=bounded, now=NOW) == 0
    assert allowance(agent=bounded, threshold_name="flag_threshold", now=NOW).changes_left == 0


@pytest.mark.django_db
def test_cycle_state__a_change_at_the_cycles_first_instant__counted_and_the_base_is_the_one_live_before(
    db: None,
) -> None:
    agent, _ = make_agent("early", thresholds=NEAR_BOUNDS, now=NOW - timedelta(days=10))
    start = cycle_state(agent=agent, now=NOW).started_at
    proposal_versions(agent, 1, start=start - timedelta(seconds=1))  # the last week's: the base, not counted
    config_version_activate(
        agent=agent,
        values={"flag_threshold": 0.6, "escalate_threshold": 0.85},
        source=ConfigVersion.Source.PROPOSAL,
        now=start,
    )
    state = cycle_state(agent=agent, now=NOW)
    assert state.changes == 1
    assert state.base_values == {"flag_threshold": 0.55, "escalate_threshold": 0.85}
    assert (state.cycle, state.next_cycle) == (start.date(), start.date() + timedelta(weeks=1))


@pytest.mark.django_db
def test_cycle_state__a_rollback__not_counted(bounded: Agent) -> None:
    config_version_activate(
        agent=bounded,
        values={"flag_threshold": 0.55, "escalate_threshold": 0.85},
        source=ConfigVersion.Source.ROLLBACK,
        now=NOW,
    )
    assert cycle_state(agent=bounded, now=NOW).changes == 0


@pytest.mark.django_db
def test_cycle_state__agent_registered_during_the_cycle__its_first_version_is_the_base(db: None) -> None:
    agent, _ = make_agent("late", thresholds=NEAR_BOUNDS, now=NOW + timedelta(hours=1))
    config_version_activate(
        agent=agent,
        values={"flag_threshold": 0.6, "escalate_threshold": 0.85},
        source=ConfigVersion.Source.PROPOSAL,
        now=NOW + timedelta(hours=2),
    )
    state = cycle_state(agent=agent, now=NOW + timedelta(hours=3))
    assert state.base_values == {"flag_threshold": 0.55, "escalate_threshold": 0.85}


# --- The allowed range, as the pages and the tuner show it -----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "low", "high", "base"),
    [("flag_threshold", 0.5, 0.66, 0.55), ("escalate_threshold", 0.68, 0.95, 0.85)],
)
def test_allowance__bounds_and_twenty_percent__the_tighter_each_side(
    bounded: Agent, name: str, low: float, high: float, base: float
) -> None:
    a = allowance(agent=bounded, threshold_name=name, now=NOW)
    assert (a.low, a.high, a.base) == (pytest.approx(low), pytest.approx(high), base)
    assert (a.cycle.isoformat(), a.changes_left, a.locked) == ("2026-03-02", 3, False)
    assert allowed_range(agent=bounded, threshold_name=name, now=NOW) == (a.low, a.high)
    # The range shown is what the guard accepts, to the edge.
    assert check(bounded, a.low, name) == pytest.approx(a.low)
    assert check(bounded, a.high, name) == pytest.approx(a.high)
    for outside in (a.low - 1e-4, a.high + 1e-4):
        assert isinstance(refusal(bounded, outside, name), GuardrailViolation)


@pytest.mark.django_db
def test_allowance__after_a_change_this_cycle__still_from_the_cycles_start(bounded: Agent) -> None:
    proposal_versions(bounded, 2)  # flag_threshold at 0.56 now
    a = allowance(agent=bounded, threshold_name="flag_threshold", now=NOW)
    assert (a.low, a.high, a.base, a.changes_left) == (0.5, pytest.approx(0.66), 0.55, 1)


@pytest.mark.django_db
def test_allowance__locked__said(bounded: Agent) -> None:
    agent_config_lock(agent=bounded, actor=user_with_role("approver", username="alice"), rationale="r", now=NOW)
    bounded.refresh_from_db()
    assert allowance(agent=bounded, threshold_name="flag_threshold", now=NOW).locked is True


@pytest.mark.django_db
def test_allowance__negative_threshold__twenty_percent_of_its_size(db: None) -> None:
    agent, _ = make_agent("neg", thresholds=[{"name": "t", "value": -0.5, "action": "flag", "min": -1.0}])
    assert allowed_range(agent=agent, threshold_name="t", now=NOW) == (pytest.approx(-0.6), pytest.approx(-0.4))
    assert change_check(agent=agent, threshold_name="t", value=-0.6, now=NOW) == pytest.approx(-0.6)


@pytest.mark.django_db
def test_proposal_detail_page__allowed_range_shown__the_guards(client: Any, bounded: Agent) -> None:
    approver = user_with_role("approver", username="alice")
    proposal = make_proposal(bounded, proposed=0.6)
    client.force_login(approver)
    with time_machine.travel(NOW, tick=False):
        page = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()
    assert 'min="0.5" max="0.66"' in page
    assert "this cycle allows 0.5 to 0.66: within 20 % of 0.55" in page


# --- Every path that takes a value: NaN, infinity, a bool ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "true", ""])
def test_proposal_detail_page__modify_to_a_value_not_finite__refused_nothing_changes(
    client: Any, bounded: Agent, value: str
) -> None:
    proposal = make_proposal(bounded, proposed=0.6)
    client.force_login(user_with_role("approver", username="alice"))
    with time_machine.travel(NOW, tick=False):
        response = client.post(
            reverse("proposal-detail", args=[proposal.pk]), {"decision": "modify", "value": value, "rationale": "r"}
        )
    assert response.status_code == 400
    assert config_get_live(agent=bounded).version == 1


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "true", ""])
def test_proposal_new_page__a_value_not_finite__refused_nothing_proposed(
    client: Any, bounded: Agent, value: str
) -> None:
    client.force_login(user_with_role("approver", username="alice"))
    form = {"agent": "bounded", "threshold": "flag_threshold", "value": value, "rationale": "r"}
    with time_machine.travel(NOW, tick=False):
        response = client.post(reverse("proposal-new"), form)
    assert response.status_code in (200, 400)
    assert "must be" in response.content.decode()
    assert not bounded.proposals.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "true", "null"])
def test_proposal_decision_api__modify_to_a_value_not_finite__4xx_nothing_changes(bounded: Agent, value: str) -> None:
    proposal = make_proposal(bounded, proposed=0.6)
    api = client_for(user_with_role("approver", username="alice"))
    body = f'{{"decision": "modify", "value": {value}, "rationale": "r"}}'
    with time_machine.travel(NOW, tick=False):
        response = api.post(reverse("api-proposal-decision", args=[proposal.pk]), body, content_type="application/json")
    assert 400 <= response.status_code < 500, response.content
    assert config_get_live(agent=bounded).version == 1


@pytest.mark.django_db
def test_proposal_decision_api__modify_without_a_value__400(bounded: Agent) -> None:
    proposal = make_proposal(bounded, proposed=0.6)
    api = client_for(user_with_role("approver", username="alice"))
    with time_machine.travel(NOW, tick=False):
        response = api.post(
            reverse("api-proposal-decision", args=[proposal.pk]),
            {"decision": "modify", "rationale": "r"},
            format="json",
        )
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["field"] == "value"


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["NaN", "Infinity", "true", "null"])
def test_manual_proposal_api__a_value_not_finite__4xx_nothing_proposed(bounded: Agent, value: str) -> None:
    api = client_for(user_with_role("approver", username="alice"))
    body = f'{{"thresholdName": "flag_threshold", "proposedValue": {value}, "rationale": "r"}}'
    with time_machine.travel(NOW, tick=False):
        response = api.post(reverse("api-proposal-list", args=["bounded"]), body, content_type="application/json")
    assert 400 <= response.status_code < 500, response.content
    assert not bounded.proposals.exists()


# --- Rationales and designations ---------------------------------------------------------------------------


def test_rationale_check__4000_characters__accepted_4001__refused() -> None:
    assert rationale_check("  " + "r" * 4000 + "  ") == "r" * 4000
    with pytest.raises(ValidationFailed) as caught:
        rationale_check("r" * 4001)
    assert (caught.value.field, caught.value.message) == ("rationale", "rationale is longer than 4,000 characters")


@pytest.mark.parametrize("text", [None, "", "   "])
def test_rationale_check__empty__refused_naming_the_field(text: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        rationale_check(text, field="reason")
    assert (caught.value.field, caught.value.message) == ("reason", "reason is required")


@pytest.mark.django_db
def test_designation_check__as_many_required_as_designated__accepted_one_more__refused() -> None:
    people = [user_with_role("approver", username=name) for name in ("alice", "bob")]
    designation_check(approvers=people, required=2)
    designation_check(approvers=[], required=5)  # none designated: any approvers count
    with pytest.raises(ValidationFailed) as caught:
        designation_check(approvers=people, required=3)
    assert caught.value.message == (
        "3 approvals cannot be required of 2 designated approvers: designate at least 3, or require at most 2"
    )
    with pytest.raises(ValidationFailed, match="of 1 designated approver: designate"):
        designation_check(approvers=people[:1], required=2)


@pytest.mark.parametrize("required", [0, -1, True, 1.0, "1"])
def test_designation_check__required_not_a_whole_number_from_1__refused(required: Any) -> None:
    with pytest.raises(ValidationFailed) as caught:
        designation_check(approvers=[], required=required)
    assert caught.value.field == "requiredApprovals"


@pytest.mark.django_db
def test_designation_check__a_reviewer_designated__refused() -> None:
    with pytest.raises(ValidationFailed) as caught:
        designation_check(approvers=[user_with_role("reviewer", username="rita")], required=1)
    assert (caught.value.field, caught.value.message) == ("approvers", "'rita' is not an approver")


# --- Edges of the guard's own tolerance and of its refusals' fields ------------------------------------------


@pytest.mark.django_db
def test_change_check__exactly_the_float_tolerance_past_a_bound__accepted(bounded: Agent) -> None:
    assert check(bounded, 0.5 - EPS) == 0.5 - EPS
    assert check(bounded, 0.95 + EPS, "escalate_threshold") == 0.95 + EPS


@pytest.mark.django_db
def test_change_check__exactly_the_float_tolerance_past_twenty_percent__accepted(db: None) -> None:
    # A base for which the move to the tolerance's edge is exact in binary (0.1 is one).
    step = rule("MAX_MOVE_FRACTION")
    base = next(
        b / 1000 for b in range(100, 800) if (b / 1000 + (b / 1000 * step + EPS)) - b / 1000 == b / 1000 * step + EPS
    )
    agent, _ = make_agent("exact", thresholds=[{"name": "t", "value": base, "action": "flag"}])
    edge = base + (base * step + EPS)
    assert change_check(agent=agent, threshold_name="t", value=edge, now=NOW) == edge
    with pytest.raises(GuardrailViolation):
        change_check(agent=agent, threshold_name="t", value=math.nextafter(edge, 2.0), now=NOW)


@pytest.mark.django_db
def test_change_check__above_the_maximum_and_past_the_cap__refusals_name_the_field(bounded: Agent) -> None:
    assert refusal(bounded, 0.96, "escalate_threshold").field == "value"
    proposal_versions(bounded, 3)
    with pytest.raises(GuardrailViolation) as caught:
        change_check(agent=bounded, threshold_name="flag_threshold", value=0.6, now=NOW, field="proposedValue")
    assert caught.value.field == "proposedValue"


@pytest.mark.django_db
def test_change_check__another_agents_threshold_of_the_same_name__its_own_bounds(bounded: Agent) -> None:
    make_agent("other", thresholds=[{"name": "flag_threshold", "value": 0.3, "action": "flag", "min": 0.2}])
    assert isinstance(refusal(bounded, 0.45), GuardrailViolation)  # bounded's minimum is 0.5, other's 0.2
    assert allowed_range(agent=bounded, threshold_name="flag_threshold", now=NOW) == (0.5, pytest.approx(0.66))


@pytest.mark.django_db
def test_change_check__locked_with_nobody_named__an_approver(bounded: Agent) -> None:
    Agent.objects.filter(pk=bounded.pk).update(locked_at=NOW, lock_rationale="by hand")
    bounded.refresh_from_db()
    with pytest.raises(AgentLocked) as caught:
        check(bounded, 0.55)
    assert caught.value.field == "agentId"
    assert caught.value.message.startswith("bounded's config is locked (by an approver: by hand);")


@pytest.mark.django_db
def test_threshold_added_after_the_cycle_began__from_its_minimum_and_not_changeable_yet(bounded: Agent) -> None:
    ThresholdDefinition.objects.create(agent=bounded, name="late", action="flag", min_value=0.3, max_value=0.9)
    a = allowance(agent=bounded, threshold_name="late", now=NOW)
    assert (a.base, a.low, a.high) == (0.3, 0.3, pytest.approx(0.36))
    with pytest.raises(ValidationFailed) as caught:
        check(bounded, 0.3, "late")
    assert (caught.value.field, caught.value.message) == ("thresholdName", "the live config has no 'late'")


@pytest.mark.django_db
def test_allowance__unknown_threshold__refused_naming_the_field(bounded: Agent) -> None:
    with pytest.raises(ValidationFailed) as caught:
        allowance(agent=bounded, threshold_name="nope", now=NOW)
    assert (caught.value.field, caught.value.message) == ("thresholdName", "bounded has no threshold 'nope'")


@pytest.mark.django_db
def test_cycle_state__started_at__the_cycles_first_instant(bounded: Agent) -> None:
    assert cycle_state(agent=bounded, now=NOW).started_at == NOW.replace(hour=0)  # a Monday, in UTC


@pytest.mark.django_db
@pytest.mark.parametrize("actor", [AnonymousUser(), object()])
def test_approver_refusal__nobody_named__someone(bounded: Agent, actor: Any) -> None:
    refusal_ = approver_refusal(actor, DECIDE, agent=bounded)
    assert refusal_ is not None and refusal_.message == "someone is not an approver; only approvers decide proposals"


@pytest.mark.django_db
def test_scope_note__an_approver_who_may__empty(bounded: Agent) -> None:
    assert scope_note(user_with_role("approver", username="alice"), DECIDE, agent=bounded) == ""
    assert scope_note(user_with_role("reviewer", username="rita"), DECIDE, agent=bounded) == ""


def test_designation_check__not_a_whole_number__says_so() -> None:
    with pytest.raises(ValidationFailed) as caught:
        designation_check(approvers=[], required=0)
    assert caught.value.message == "required approvals must be a whole number, 1 or more"


@pytest.mark.django_db
def test_agents_in_scope__by_role_and_designation__the_agents_they_may_decide(bounded: Agent) -> None:
    alice, bob = (user_with_role("approver", username=name) for name in ("alice", "bob"))
    mine, _ = make_agent("mine")
    theirs, _ = make_agent("theirs")
    mine.approvers.add(alice)
    theirs.approvers.add(bob)

    assert sorted(a.agent_id for a in agents_in_scope(alice)) == ["bounded", "mine"]
    assert sorted(a.agent_id for a in agents_in_scope(bob)) == ["bounded", "theirs"]
    admin = user_with_role("admin", username="root-admin")
    assert sorted(a.agent_id for a in agents_in_scope(admin)) == ["bounded", "mine", "theirs"]
    assert list(agents_in_scope(user_with_role("reviewer", username="rita"))) == []
    assert list(agents_in_scope(AnonymousUser())) == []
