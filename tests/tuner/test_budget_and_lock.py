"""Whole cycles and the rules around them: a locked config, the guard's range and its count of changes, the miss
reference and the budget it sets, threshold creep."""

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from approvals.lock import agent_config_lock
from tests.factories import NOW, make_agent, user_with_role
from tests.tuner.helpers import log_rows, output, spread
from tests.tuner.test_cycle import flag_too_low_rows, stat_run
from thresholds.models import Agent
from thresholds.services import config_version_activate
from tuner.analysis import CycleFacts, rules_apply
from tuner.models import MissReference, Proposal

pytestmark = pytest.mark.django_db

RULES: dict[str, Any] = {
    "MAX_PROPOSALS_PER_CYCLE": 3,
    "MIN_EVIDENCE_ENTRIES": 5,
    "MAX_MOVE_FRACTION": 0.20,
    "HEALTHY_DISMISSAL_RATE": 0.15,
    "MIN_RESPONSE_RATE": 0.60,
    "BASELINE_WEEKS": 2,
}


def test_cycle__locked_config__reports_but_proposes_nothing_and_says_who_and_why() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    alice = user_with_role("approver", username="alice")
    agent_config_lock(
        agent=agent, actor=alice, rationale="converged; frozen for the audit", now=NOW - timedelta(days=1)
    )
    agent = Agent.objects.get(pk=agent.pk)
    run = stat_run(agent)

    out = output(run)
    assert out["proposals"] == [] and not Proposal.objects.filter(run=run).exists()
    assert (
        "locked" in out["summary"] and "alice" in out["summary"] and "converged; frozen for the audit" in out["summary"]
    )
    assert out["systemHealth"] == "needs-attention"  # still reported: a third of the flags are dismissed
    assert run.stats["locked"]["by"] == "alice" and run.stats["dismissalRate"] > 0.15
    assert any(n.startswith("not proposed (config locked): flag_threshold") for n in run.notes)


def test_cycle__candidates_stay_within_the_guards_allowed_range(monkeypatch: pytest.MonkeyPatch) -> None:
    from approvals import guard

    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    asked: list[Any] = []
    real = guard.allowances

    def narrow(*, agent: Agent, now: Any, definitions: Any = None) -> dict[str, guard.Allowance]:
        asked.append(now)
        found = real(agent=agent, now=now, definitions=definitions)
        low, high = (0.6, 0.652)
        return {**found, "flag_threshold": replace(found["flag_threshold"], low=low, high=high)}

    monkeypatch.setattr(guard, "allowances", narrow)
    run = stat_run(agent)
    (out,) = output(run)["proposals"]
    assert out["thresholdName"] == "flag_threshold" and 0.6 < out["proposedValue"] <= 0.652
    assert asked == [NOW]  # the guard asked once, for every threshold
    assert run.stats["allowedRanges"]["flag_threshold"] == [0.6, 0.652]


def test_cycle__range_from_the_value_at_the_cycles_start__not_the_live_one() -> None:
    # flag_threshold was 0.5 when the cycle began and a change made it 0.58 an hour ago: this cycle allows 0.4 to
    # 0.6 (20 % of 0.5), although 20 % of the live value would reach 0.696.
    agent, _ = make_agent(thresholds=[{"name": "flag_threshold", "value": 0.5, "action": "flag"}])
    config_version_activate(
        agent=agent, values={"flag_threshold": 0.58}, source="proposal", now=NOW - timedelta(hours=1)
    )
    rows = flag_too_low_rows(800)
    for row in rows:
        if 0.58 <= row["confidence"] < 0.6:
            row.update(response="dismiss", features={"night": 1.0, "amount": 1.0})
    log_rows(agent, rows)
    run = stat_run(agent)
    assert run.stats["allowedRanges"]["flag_threshold"] == pytest.approx([0.4, 0.6])
    proposals = output(run)["proposals"]
    assert proposals and all(p["proposedValue"] <= 0.6 for p in proposals), proposals


def test_cycle__no_changes_left_this_cycle__nothing_proposed_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    from approvals import guard

    real = guard.allowances
    monkeypatch.setattr(
        guard,
        "allowances",
        lambda **kwargs: {name: replace(a, changes_left=0) for name, a in real(**kwargs).items()},
    )
    run = stat_run(agent)
    assert output(run)["proposals"] == []
    assert "3 changes from proposals have already gone live this cycle" in output(run)["summary"]
    assert run.stats["changesLeft"] == 0


def test_rules__one_change_left__one_proposal() -> None:
    from tests.tuner.test_analysis import FACTS, candidate

    facts = CycleFacts(**{**FACTS.__dict__, "changes_left": 1})
    out = rules_apply(candidates=[candidate("a", 5), candidate("b", 9)], facts=facts, rules=RULES)
    assert [c.threshold_name for c in out.proposals] == ["b"]
    assert any("only 1 more change(s)" in n for n in out.notes)


def test_rules__threshold_creep__increases_dropped_decreases_kept_and_said() -> None:
    from tests.tuner.test_analysis import FACTS, candidate

    facts = CycleFacts(**{**FACTS.__dict__, "creep": True, "creep_text": "escalations went from 9% to 2%"})
    down = candidate("down", 3, current_value=0.8, proposed_value=0.7, direction="decrease")
    out = rules_apply(candidates=[candidate("up", 9), down], facts=facts, rules=RULES)
    assert [c.threshold_name for c in out.proposals] == ["down"]
    assert "No increase is proposed until it clears" in out.summary and "9% to 2%" in out.summary
    assert any(n.startswith("dropped up increase") and "threshold creep" in n for n in out.notes)


def test_cycle__escalation_noise_in_the_first_cycle__no_creep() -> None:
    # Reviewers escalated a lot in the first weeks and hardly at all in the last one, before any change: noise.
    agent, _ = make_agent()
    rows = flag_too_low_rows(600)
    for i, row in enumerate(rows):
        if row["confidence"] >= 0.7 and i % 4 == 0 and row["at"] < NOW - timedelta(days=7):
            row.update(response="escalate")
    log_rows(agent, rows)
    run = stat_run(agent)
    assert not run.stats["thresholdCreep"] and "no accepted rise" in run.stats["creepTest"]["reason"]
    assert "creep" not in output(run)["summary"].lower()
    assert output(run)["proposals"]


def _changed_rows(at_change: Any) -> list[dict[str, Any]]:
    """Four weeks: reviewers escalate every sixth flag above 0.7 until ``at_change``, none after; dismissals of
    flags under 0.7 throughout, fewer after the change."""
    rows = flag_too_low_rows(800)
    for i, row in enumerate(rows):
        before = row["at"] < at_change
        if row["confidence"] >= 0.7 and i % 6 == 0 and before:
            row["response"] = "escalate"
        if not before and row["response"] == "dismiss" and i % 2:
            row["response"] = "approve"
    return rows


def test_cycle__escalations_fall_after_an_accepted_rise__creep_blocks_increases_and_says_so() -> None:
    agent, _ = make_agent(now=NOW - timedelta(weeks=5))
    change = NOW - timedelta(days=13)
    log_rows(agent, _changed_rows(change))
    config_version_activate(
        agent=agent, values={"flag_threshold": 0.61, "escalate_threshold": 0.85}, source="proposal", now=change
    )
    run = stat_run(agent)
    assert run.stats["thresholdCreep"], run.stats["creepTest"]
    out = output(run)
    assert [p for p in out["proposals"] if p["direction"] == "increase"] == []
    assert "Threshold creep" in out["summary"] and "No increase is proposed until it clears" in out["summary"]
    assert out["systemHealth"] == "needs-attention"


def test_cycle__first_accepted_change__reference_measured_from_the_weeks_before_and_kept() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    change = NOW - timedelta(days=6)
    config_version_activate(
        agent=agent, values={"flag_threshold": 0.62, "escalate_threshold": 0.85}, source="proposal", now=change
    )
    first = stat_run(agent)
    reference = MissReference.objects.get(agent=agent)
    assert (reference.period_start, reference.period_end) == (change - timedelta(weeks=4), change)
    assert reference.set_by is None and reference.measured
    assert reference.figures["flag_threshold"]["value"] == 0.6
    assert set(reference.figures["flag_threshold"]) >= {"misses", "realCases", "rate", "floors"}
    assert first.stats["missReference"]["label"] == reference.label
    # Kept: the next cycle reads it and does not measure again.
    measured_at = reference.measured_at
    stat_run(agent, now=NOW + timedelta(weeks=1))
    assert MissReference.objects.get(agent=agent).measured_at == measured_at


def test_cycle__reference_period_set_by_an_engineer__measured_by_the_next_cycle() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    engineer = user_with_role("admin", username="eng")
    MissReference.objects.create(
        agent=agent, period_start=NOW - timedelta(weeks=3), period_end=NOW - timedelta(weeks=1), set_by=engineer
    )
    run = stat_run(agent)
    reference = MissReference.objects.get(agent=agent)
    assert reference.measured and reference.set_by == engineer
    assert (
        run.stats["missReference"]["label"]
        == f"{NOW - timedelta(weeks=3):%Y-%m-%d}..{NOW - timedelta(weeks=1):%Y-%m-%d}"
    )
    assert not run.stats["missReference"]["provisional"]


def test_cycle__misses_at_the_reference_budget__rise_held_and_summary_says_so() -> None:
    # Reviewers confirm cases all through 0.62-0.70 (one in five flags there): every rise past 0.62 loses some.
    # Every pass is reviewed, and one in four between 0.50 and 0.55 is a real miss today, so one cycle could add
    # 10 % of them; but the engineer's reference is a period with no misses at all: the budget is spent.
    agent, _ = make_agent(review_sample_rate=1.0)
    rows = flag_too_low_rows(600)
    for i, row in enumerate(rows):
        if row["response"] == "dismiss" and row["confidence"] >= 0.62 and i % 5 == 0:
            row["response"] = "approve"
        if 0.5 <= row["confidence"] < 0.55 and i % 4 == 0:
            row["response"] = "escalate"
    log_rows(agent, rows)
    MissReference.objects.create(
        agent=agent,
        period_start=NOW - timedelta(weeks=8),
        period_end=NOW - timedelta(weeks=4),
        figures={"flag_threshold": {"misses": 0, "realCases": 1000, "rate": 0.0, "value": 0.6}},
        measured_start=NOW - timedelta(weeks=8),
        measured_end=NOW - timedelta(weeks=4),
    )
    run = stat_run(agent)
    summary = output(run)["summary"]
    assert "flag_threshold held at" in summary, (summary, run.notes)
    assert "a further rise would put misses" in summary and "reference" in summary
    # Whatever is still proposed adds no real miss: the budget has nothing left.
    for p in output(run)["proposals"]:
        impact = Proposal.objects.get(run=run, threshold_name=p["thresholdName"]).impact
        assert impact["missBudget"]["rateToday"] > impact["missBudget"]["allowedRate"]
        assert impact["misses"]["change"] <= 0


def test_cycle__stored_impact_in_the_api_shape_with_the_budget_beside_it() -> None:
    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)
    impact = Proposal.objects.get(run=run).impact
    assert set(impact["falseAlarms"]) == {"change", "low", "high"} and set(impact["misses"]) == {
        "change",
        "low",
        "high",
    }
    assert impact["falseAlarms"]["change"] < 0 and impact["falseAlarms"]["low"] <= impact["falseAlarms"]["high"]
    assert 0 <= impact["beatsCurrentShare"] <= 1
    assert impact["missBudget"]["provisional"] is True  # no change accepted yet: the window stands in
    assert {"missesToday", "realCases", "noiseFloors", "riskReasons"} <= set(impact)


def test_helpers_spread__covers_the_window() -> None:
    first, last = spread(10)[0], spread(10)[-1]
    assert NOW - timedelta(weeks=4) < first < last < NOW


def test_cycle__misses_accepted_changes_added__count_against_the_budget_even_when_the_window_hides_them() -> None:
    # The window shows no misses (every pass is reviewed and none escalated), but a change accepted since the
    # reference was replayed to add 5 % of the real cases: that is spent, and no rise that loses a case is left.
    agent, _ = make_agent(review_sample_rate=1.0)
    rows = flag_too_low_rows(600)
    for i, row in enumerate(rows):
        if row["response"] == "dismiss" and row["confidence"] >= 0.62 and i % 5 == 0:
            row["response"] = "approve"
    log_rows(agent, rows)
    period_end = NOW - timedelta(weeks=4)
    MissReference.objects.create(
        agent=agent,
        period_start=NOW - timedelta(weeks=8),
        period_end=period_end,
        figures={"flag_threshold": {"misses": 0, "realCases": 1000, "rate": 0.0, "value": 0.55}},
        measured_start=NOW - timedelta(weeks=8),
        measured_end=period_end,
    )
    Proposal.objects.create(
        agent=agent,
        threshold_name="flag_threshold",
        current_value=0.55,
        proposed_value=0.6,
        direction="increase",
        confidence="high",
        expected_impact="x",
        impact={
            "misses": {"change": 50.0, "low": 40.0, "high": 60.0},
            "realCases": 1000.0,
            "riskReasons": ["material"],
        },
        evidence_count=20,
        risk_assessment="x",
        status="accepted",
        created_at=period_end + timedelta(days=1),
        decided_at=period_end + timedelta(days=1),
    )
    run = stat_run(agent)
    assert run.stats["missReference"]["byThreshold"]["flag_threshold"]["spent"] == pytest.approx(0.05)
    assert "flag_threshold held at" in output(run)["summary"], (output(run)["summary"], run.notes)
    for p in output(run)["proposals"]:
        assert Proposal.objects.get(run=run, threshold_name=p["thresholdName"]).impact["misses"]["change"] <= 0


def test_proposal_page__impact_in_the_api_shape__rendered_with_its_intervals(client: Any) -> None:
    from django.urls import reverse

    agent, _ = make_agent()
    log_rows(agent, flag_too_low_rows())
    run = stat_run(agent)
    proposal = Proposal.objects.get(run=run)
    fa = proposal.impact["falseAlarms"]
    client.force_login(user_with_role("approver", username="alice"))
    html = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()
    numbers = html[html.index('data-testid="impact-numbers"') :]
    numbers = numbers[: numbers.index("</dd>")]
    assert f"False alarms {fa['change']:+.0f} over the 28 days replayed (likely range {fa['low']:+.0f} to" in numbers
    assert "Real missed signals" in numbers and "Miss budget" in numbers
