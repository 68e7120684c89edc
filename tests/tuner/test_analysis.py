"""The tuner's statistics on crafted data whose right answer is known (no database)."""

from typing import Any

import numpy as np
import pytest

from loopsite.rules import rule
from tuner.analysis import (
    BINS,
    Candidate,
    CycleFacts,
    Objective,
    Reference,
    ReplayData,
    WeekStats,
    candidate_problem,
    candidate_range,
    choose,
    choose_value,
    cluster_by_features,
    cluster_by_rules,
    miss_rule_checks,
    noise_floor,
    replay_at,
    risk_reasons,
    risk_text,
    rules_apply,
    threshold_creep,
)

RULES: dict[str, Any] = {
    "MAX_PROPOSALS_PER_CYCLE": 3,
    "MIN_EVIDENCE_ENTRIES": 5,
    "MAX_MOVE_FRACTION": 0.20,
    "HEALTHY_DISMISSAL_RATE": 0.15,
    "MIN_RESPONSE_RATE": 0.60,
    "BASELINE_WEEKS": 2,
}
TOLERANCE = Objective(kind="tolerance", miss_tolerance=0.10, miss_cost=5.0)


def spaced(lo: float, hi: float, n: int) -> list[float]:
    return [round(x, 4) for x in np.linspace(lo, hi, n, endpoint=False)]


def test_replay__counts_false_alarms_above_and_misses_below_the_value() -> None:
    data = ReplayData.from_confidences(negatives=[0.55, 0.62, 0.65, 0.9], positives=[0.58, 0.71, 0.8])
    assert replay_at(data, 0.6).false_alarms == 3 and replay_at(data, 0.6).misses == 1
    assert replay_at(data, 0.7).false_alarms == 1 and replay_at(data, 0.7).misses == 1
    assert replay_at(data, 0.75).misses == 2


def test_replay__sampled_decisions_weigh_one_over_the_sample_rate() -> None:
    data = ReplayData.from_confidences(
        negatives=[], positives=[], sampled_positives=[0.5, 0.55], sampled_negatives=[0.3], sample_rate=0.1
    )
    assert replay_at(data, 0.6).misses == 20
    assert replay_at(data, 0.2).false_alarms == 10


def test_candidate_range__twenty_percent_and_bounds__rounded_inward() -> None:
    assert candidate_range(0.6, 0.0, 1.0, 0.2) == (0.48, 0.72)
    assert candidate_range(0.9, 0.0, 0.95, 0.2) == (0.72, 0.95)
    low, high = candidate_range(0.333, 0.0, 1.0, 0.2)
    assert low >= 0.333 * 0.8 and high <= 0.333 * 1.2


def test_choose_value__threshold_too_low__increase_to_where_dismissals_end_with_high_confidence() -> None:
    # Dismissals between 0.60 and 0.70, approvals above: the right value is 0.70.
    data = ReplayData.from_confidences(negatives=spaced(0.60, 0.70, 60), positives=spaced(0.70, 0.95, 60))
    choice = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is not None
    assert choice.direction == "increase" and choice.value == 0.7
    assert choice.false_alarm_change == -60 and choice.miss_change == 0
    assert choice.confidence == "high" and not choice.risk_flagged


def test_choose_value__best_value_beyond_twenty_percent__stops_at_the_bound() -> None:
    data = ReplayData.from_confidences(negatives=spaced(0.50, 0.90, 80), positives=spaced(0.90, 0.99, 30))
    choice = choose_value(data, current=0.5, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is not None and choice.value == 0.6


def misses_below_and_cases_above(*, losses: list[float], escalations: int = 20) -> ReplayData:
    """Today's value 0.6. One action below it: 500 quiet decisions 0.05-0.30, then 400 more among ``escalations``
    real misses 0.30-0.59 (too spread to be worth catching). At the gated action: 200 pure dismissals 0.60-0.65,
    100 more dismissals 0.65-0.75 among confirmed cases at ``losses``, and 90 confirmed cases at 0.9. The lower
    half of each population holds no positive: both noise floors are zero."""
    return ReplayData.from_confidences(
        negatives=spaced(0.05, 0.3, 500) + spaced(0.3, 0.59, 400) + spaced(0.60, 0.65, 200) + spaced(0.65, 0.75, 100),
        positives=spaced(0.3, 0.59, escalations) + losses + [0.9] * 90,
        current=0.6,
    )


def test_choose_value__increase_would_lose_confirmed_cases__held_to_the_tolerance_of_todays_misses() -> None:
    # Today 20 real misses: one cycle may add 10 % of them, 2. Confirmed cases at 0.66, 0.67, 0.68, ...: 0.68 loses
    # two of them, 0.681 three.
    data = misses_below_and_cases_above(losses=spaced(0.66, 0.76, 10))
    choice = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is not None and choice.direction == "increase"
    # A few escalations among 900 quiet decisions might all be slips: the bounds take some of them off.
    today = choice.current.misses
    assert 8 <= today < 20 and choice.noise_floors[0] == 0.0 and 0 < choice.noise_floors[1] < 0.01
    assert 0.65 <= choice.value <= 0.68 and choice.miss_change <= 0.1 * today + 1e-9
    assert not choice.risk_flagged  # within 10 % of today's misses is not material


def test_choose_value__sampled_escalations_that_are_slips__do_not_count_as_misses() -> None:
    # One action below 0.6 the reviewers see a 10 % sample; 3 % of it is escalated by slips, evenly over the
    # confidence range: weighted by 1 / sample rate, the raw replay counts 10 misses per slip.
    rng = np.random.default_rng(7)
    below = [round(float(c), 4) for c in rng.uniform(0.0, 0.6, 2000)]
    slips = below[::33]
    data = ReplayData.from_confidences(
        negatives=spaced(0.60, 0.65, 60),
        positives=spaced(0.65, 0.95, 200),
        sampled_negatives=[c for i, c in enumerate(below) if i % 33],
        sampled_positives=slips,
        sample_rate=0.1,
        current=0.6,
    )
    assert replay_at(data, 0.6).misses == 10 * len(slips)  # what the old replay called missed signals
    choice = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is not None and choice.value == 0.65
    assert 0.02 <= choice.noise_floors[1] <= 0.05
    assert choice.current.misses < 0.2 * 10 * len(slips)


def test_noise_floor__flat_slips_then_real_cases__the_slip_rate() -> None:
    totals = np.zeros(BINS + 1)
    positives = np.zeros(BINS + 1)
    totals[100:700] = 50
    positives[100:700] = 1.5  # 3 % slips
    totals[700:900] = 50
    positives[700:900] = 40
    assert abs(noise_floor(positives, totals, cap=0.05) - 0.03) < 1e-9
    # A level above the cap is not slips: the floor is unknown and nothing is subtracted.
    assert noise_floor(positives, totals, cap=0.02) == 0.0
    assert noise_floor(np.zeros(BINS + 1), np.zeros(BINS + 1), cap=0.05) == 0.0


def test_noise_floor__real_cases_reach_into_the_lower_half__the_lowest_quarter_gives_it() -> None:
    totals = np.zeros(BINS + 1)
    positives = np.zeros(BINS + 1)
    totals[100:350] = 50
    positives[100:350] = 1.5  # 3 % slips: the lowest quarter of the responses
    totals[350:1000] = 50
    positives[350:1000] = 30  # real cases from there on, 60 %
    assert abs(noise_floor(positives, totals, cap=0.05) - 0.03) < 1e-9


# The rules as settings has them (MISS_TOLERANCE 0.10, MISS_BUDGET_SLACK 0.003, RISK_MATERIAL_SHARE 0.10).
RULED = Objective(
    miss_tolerance=rule("MISS_TOLERANCE"),
    miss_slack=rule("MISS_BUDGET_SLACK"),
    miss_slack_cases=rule("MISS_BUDGET_SLACK_CASES"),
    noise_floor_max=rule("NOISE_FLOOR_MAX"),
    risk_share=rule("RISK_MATERIAL_SHARE"),
)


def test_reference_allowed_rate__tolerance_or_slack_whichever_is_larger() -> None:
    assert (rule("MISS_TOLERANCE"), rule("MISS_BUDGET_SLACK")) == (0.10, 0.003)
    assert Reference(0.10, 10, 100, "r").allowed_rate(RULED) == pytest.approx(0.11)
    assert Reference(0.02, 20, 1000, "r").allowed_rate(RULED) == pytest.approx(0.023)  # the slack is larger
    assert Reference(0.03, 30, 1000, "r").allowed_rate(RULED) == pytest.approx(0.033)  # both the same
    assert Reference(0.0, 0, 100, "r").allowed_rate(RULED) == 0.003  # a reference of zero: the slack


def checks(**kw: Any) -> dict[str, bool]:
    base: dict[str, Any] = {
        "misses_today": 20.0,
        "misses_new": 20.0,
        "lost_share": 0.0,
        "real": 100.0,
        "objective": RULED,
        "allowed_rate": None,
        "committed_rate": 0.0,
    }
    base.update(kw)
    return {k: bool(v) for k, v in miss_rule_checks(**base).items()}


def test_miss_rules__per_cycle_tolerance_of_todays_misses__edge() -> None:
    assert checks(misses_new=22.0)["cycle"]  # +2 is 10 % of 20
    assert not checks(misses_new=22.01)["cycle"]


def test_miss_rules__no_misses_today__the_slack_share_of_real_cases__edge() -> None:
    assert checks(misses_today=0.0, misses_new=6.0, real=2000.0)["cycle"]  # 0.3 % of 2000
    assert not checks(misses_today=0.0, misses_new=6.01, real=2000.0)["cycle"]


def test_miss_rules__slack_is_never_less_than_one_real_case__edge() -> None:
    assert rule("MISS_BUDGET_SLACK_CASES") == 1
    assert checks(misses_today=0.0, misses_new=1.0, real=100.0)["cycle"]  # 0.3 % of 100 is 0.3: one case
    assert not checks(misses_today=0.0, misses_new=1.01, real=100.0)["cycle"]
    assert Reference(0.0, 0, 0, "r").allowed_rate(RULED, real=100.0) == pytest.approx(0.01)
    assert Reference(0.0, 0, 0, "r").allowed_rate(RULED, real=1000.0) == pytest.approx(0.003)


def test_miss_rules__budget_counts_what_accepted_changes_added__edge() -> None:
    # Today's window shows 10 misses in 1000 real cases, but the reference (1 %) plus what the changes accepted
    # since were replayed to add (0.5 %) says 15: a rise of 1.5 reaches the allowed 1.65 %, 1.51 passes it.
    kw: dict[str, Any] = {"misses_today": 10.0, "real": 1000.0, "allowed_rate": 0.0165, "committed_rate": 0.015}
    assert checks(misses_new=11.5, **kw)["budget"]
    assert not checks(misses_new=11.51, **kw)["budget"]


def test_miss_rules__share_of_confirmed_cases_lost__edge() -> None:
    assert checks(lost_share=0.10)["confirmed"]
    assert not checks(lost_share=0.1001)["confirmed"]


def test_miss_rules__budget_against_the_reference__edge() -> None:
    assert checks(misses_new=22.0, allowed_rate=0.22)["budget"]
    assert not checks(misses_new=22.01, allowed_rate=0.22)["budget"]
    # A move that adds no misses is not stopped by a budget already spent.
    assert checks(misses_today=30.0, misses_new=30.0, allowed_rate=0.22)["budget"]
    # The cost objective has no per-cycle limits, only the budget.
    assert set(checks(objective=Objective(kind="cost"), allowed_rate=0.3)) == {"budget"}


def test_risk_reasons__material_rise__edge() -> None:
    kw: dict[str, Any] = {"miss_low": 0.5, "misses_today": 20.0, "remaining": None}
    kw["material_share"] = rule("RISK_MATERIAL_SHARE")
    assert risk_reasons(miss_change=2.0, **kw) == ()  # exactly 10 % of today's: not material
    assert risk_reasons(miss_change=2.01, **kw) == ("material",)
    assert risk_reasons(miss_change=15.0, **{**kw, "miss_low": 0.0}) == ()  # the interval reaches zero
    # No misses today: a rise within the slack share of the real cases (``least``) is not material.
    none_today = {**kw, "misses_today": 0.0, "least": 0.6}
    assert risk_reasons(miss_change=0.6, **none_today) == ()
    assert risk_reasons(miss_change=0.61, **none_today) == ("material",)


def test_risk_reasons__more_than_half_the_budget_left__edge() -> None:
    kw: dict[str, Any] = {"miss_low": 0.0, "misses_today": 20.0, "material_share": rule("RISK_MATERIAL_SHARE")}
    assert risk_reasons(miss_change=5.0, remaining=10.0, **kw) == ()
    assert risk_reasons(miss_change=5.01, remaining=10.0, **kw) == ("budget",)
    assert risk_reasons(miss_change=0.5, remaining=-1.0, **kw) == ("budget",)  # nothing left


def misses_below_and_mixed_above(*, escalations: int = 40) -> ReplayData:
    """As ``misses_below_and_cases_above`` (with 400 pure dismissals 0.60-0.65), but at the gated action above 0.65
    one decision in two is a confirmed case, evenly (one of each every 0.002 up to 0.80): a rise past 0.65 loses
    about one case per 0.002."""
    return ReplayData.from_confidences(
        negatives=spaced(0.05, 0.3, 500) + spaced(0.3, 0.59, 400) + spaced(0.60, 0.65, 400) + spaced(0.65, 0.80, 75),
        positives=spaced(0.3, 0.59, escalations) + spaced(0.6505, 0.8005, 75) + [0.9] * 90,
        current=0.6,
    )


def test_choose__immaterial_loss__not_flagged_and_says_so() -> None:
    data = misses_below_and_mixed_above()
    choice = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE, allowed=(0.6, 0.652))
    assert choice is not None and 0.65 < choice.value <= 0.652
    assert 0 < choice.miss_change <= 0.1 * choice.current.misses  # about 1 of about 35
    assert not choice.risk_flagged and risk_text(choice).startswith("No material rise in missed signals")


def test_choose__material_loss__flagged_and_the_risk_says_why() -> None:
    data = misses_below_and_mixed_above()
    choice = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE, fixed_value=0.67)
    assert choice is not None and choice.miss_interval[0] > 0
    today, added = choice.current.misses, choice.miss_change
    assert 8 <= added <= 12 and added > 0.1 * today  # about 10 of about 35
    assert choice.risk_flagged and choice.risk_reasons == ("material",)
    text = risk_text(choice)
    assert text.startswith("RISK: may raise missed signals.") and f"{added / today:.0%} of today's {today:.0f}" in text


def reference_leaving(choice: Any, left: float) -> Reference:
    """A reference whose budget leaves ``left`` misses in the window of ``choice``: its rate, at or above today's,
    is the floor under today's rate, and the tolerance (10 % of it) is what is left."""
    rate = left / (0.1 * choice.real_cases)
    assert rate * choice.real_cases >= choice.current.misses
    return Reference(rate=rate, misses=0, real=0, label="2026-01-05..2026-01-19")


def test_choose__uses_more_than_half_the_budget_left__flagged_and_the_risk_says_so() -> None:
    data = misses_below_and_mixed_above()
    kw: dict[str, Any] = {"current": 0.6, "lo": 0.0, "hi": 1.0, "objective": TOLERANCE, "fixed_value": 0.654}
    free = choose_value(data, **kw)
    assert free is not None and free.risk_reasons == ()  # about 2 of about 35: not material
    added = free.miss_change
    choice = choose_value(data, **kw, reference=reference_leaving(free, 2 * added - 0.01))
    assert choice is not None and choice.budget is not None
    assert choice.budget.remaining == pytest.approx(2 * added - 0.01)
    assert choice.risk_flagged and choice.risk_reasons == ("budget",)
    text = risk_text(choice)
    assert text.startswith("RISK: may raise missed signals.")
    assert "more than half of what is left" in text and "2026-01-05..2026-01-19" in text
    # Edge: exactly half of what is left: not flagged.
    choice = choose_value(data, **kw, reference=reference_leaving(free, 2 * added))
    assert choice is not None and choice.budget is not None and not choice.risk_flagged


def test_choose__a_rise_past_the_miss_budget__held_at_the_budget_and_said() -> None:
    # Each cycle may add 10 % of today's misses (about 3.5): 0.68 loses 2. Against a reference whose budget
    # today's misses already exceed, only a rise losing nothing is allowed.
    data = misses_below_and_cases_above(losses=spaced(0.66, 0.76, 10), escalations=40)
    free = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert free is not None and free.value > 0.66 and free.miss_change > 0
    # A reference of no misses at all: today's misses are already past what the budget allows.
    reference = Reference(rate=0.0, misses=0, real=0, label="2026-01-05..2026-01-19")
    chosen = choose(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE, reference=reference)
    assert chosen.choice is not None and chosen.choice.value <= 0.66 and chosen.choice.miss_change == 0
    assert chosen.held is not None and chosen.held.further == free.value
    text = chosen.held.text("flag_threshold")
    assert text.startswith(f"flag_threshold held at {chosen.choice.value:g}: a further rise would put misses")
    assert "against a reference of 0.0% (2026-01-05..2026-01-19)" in text


def test_choose_value__reviewers_escalate_below_a_threshold_set_too_high__decrease() -> None:
    # 40 escalations (missed signals) between 0.70 and 0.80, approvals far below: 0.70 catches them all.
    data = ReplayData.from_confidences(
        negatives=spaced(0.1, 0.6, 50), positives=spaced(0.70, 0.80, 40) + spaced(0.8, 0.99, 40), current=0.8
    )
    choice = choose_value(data, current=0.8, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is not None
    assert choice.direction == "decrease" and choice.value == 0.7
    # All 40 caught, less what the slip rate's upper bound over 50 quiet decisions writes off.
    assert -40 <= choice.miss_change <= -35 and choice.false_alarm_change == 0 and choice.confidence == "high"


def test_choose_value__lowering_adds_more_false_alarms_than_the_misses_are_worth__no_decrease() -> None:
    # Lowering from 0.8 to 0.7 would catch 2 misses (worth 10 false alarms) for 30 new false alarms.
    data = ReplayData.from_confidences(negatives=spaced(0.70, 0.80, 30), positives=[0.75, 0.78] + spaced(0.8, 0.99, 40))
    assert choose_value(data, current=0.8, lo=0.0, hi=1.0, objective=TOLERANCE) is None


def test_choose_value__cost_objective__trades_false_alarms_against_weighted_misses() -> None:
    # Raising from 0.6 to 0.7 cuts 30 false alarms and loses 10 approved cases.
    data = ReplayData.from_confidences(negatives=spaced(0.60, 0.70, 30), positives=spaced(0.60, 0.70, 10) + [0.9] * 50)
    cheap_misses = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=Objective("cost", 0.05, 1.0))
    dear_misses = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=Objective("cost", 0.05, 5.0))
    assert cheap_misses is not None and cheap_misses.value == 0.7
    assert dear_misses is None


def test_choose_value__noise_only__nothing_or_low_confidence() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.6, 0.75, 40)
    data = ReplayData.from_confidences(negatives=list(conf[:20]), positives=list(conf[20:]))
    choice = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is None or choice.confidence != "high"


def test_choose_value__same_data__same_answer() -> None:
    data = ReplayData.from_confidences(negatives=spaced(0.60, 0.68, 20), positives=spaced(0.66, 0.9, 30))
    first = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    second = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert first == second


def test_cluster_by_features__two_separated_groups_and_noise__two_clusters() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal([5, 0, 0], 0.3, size=(8, 3))
    b = rng.normal([0, 5, 0], 0.3, size=(6, 3))
    lone = np.array([[0, 0, 5.0], [0, -5, 0.0]])
    clusters = cluster_by_features(np.vstack([a, b, lone]), min_size=5, similarity=0.8)
    assert [c.members for c in clusters] == [list(range(8)), list(range(8, 14))]


def test_cluster_by_features__group_below_minimum_size__dropped() -> None:
    matrix = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 3)
    assert [len(c.members) for c in cluster_by_features(matrix, min_size=4, similarity=0.8)] == [4]
    assert [len(c.members) for c in cluster_by_features(matrix, min_size=3, similarity=0.7)] == [4, 3]


def test_cluster_by_rules__same_combination_in_any_order__one_cluster() -> None:
    groups = cluster_by_rules([["a", "b"], ["b", "a"], ["a"], ["a", "b"], ["c"]], min_size=2)
    assert groups == [(("a", "b"), [0, 1, 3])]


def week(esc: int, dis: int, n: int = 100, start: str = "2026-01-05") -> WeekStats:
    return WeekStats(start, n, n, n, n, approve=n - esc - dis, dismiss=dis, escalate=esc)


MONDAYS = ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]


def weeks(*pairs: tuple[int, int], n: int = 100) -> list[WeekStats]:
    return [week(e, d, n, MONDAYS[i]) for i, (e, d) in enumerate(pairs)]


CREEP: dict[str, Any] = {"min_escalations": rule("CREEP_MIN_ESCALATIONS"), "alpha": rule("CREEP_ALPHA")}


def test_threshold_creep__noise_before_any_change__no_verdict() -> None:
    # The old ratio fired on this: the latest week's escalations under half the earlier weeks', dismissals down.
    window = weeks((10, 40), (10, 35), (9, 30), (2, 12))
    verdict = threshold_creep(window, change_week=None, **CREEP)
    assert not verdict.fired and "no accepted rise" in verdict.reason


def test_threshold_creep__escalations_fall_after_a_rise__fires() -> None:
    window = weeks((12, 40), (12, 35), (2, 20), (1, 18))
    verdict = threshold_creep(window, change_week=MONDAYS[2], **CREEP)
    assert verdict.fired and verdict.p_value is not None and verdict.p_value < 0.01
    assert verdict.escalations == (24, 3) and "while dismissals fell" in verdict.reason


def test_threshold_creep__a_fall_within_chance__does_not_fire() -> None:
    verdict = threshold_creep(weeks((6, 40), (6, 35), (4, 20), (4, 18)), change_week=MONDAYS[2], **CREEP)
    assert not verdict.fired and verdict.p_value is not None and verdict.p_value > 0.01


def test_threshold_creep__dismissals_did_not_fall__does_not_fire() -> None:
    verdict = threshold_creep(weeks((12, 20), (12, 20), (2, 30), (1, 30)), change_week=MONDAYS[2], **CREEP)
    assert not verdict.fired and "did not fall" in verdict.reason


def test_threshold_creep__minimum_escalations__edge() -> None:
    assert CREEP["min_escalations"] == 20
    # 20 escalations around the change: a verdict; 19: none, however steep the fall.
    enough = threshold_creep(weeks((10, 40), (10, 35), (0, 20), (0, 18)), change_week=MONDAYS[2], **CREEP)
    assert enough.fired
    too_few = threshold_creep(weeks((10, 40), (9, 35), (0, 20), (0, 18)), change_week=MONDAYS[2], **CREEP)
    assert not too_few.fired and "fewer than the 20" in too_few.reason


def candidate(name: str, score: float, **kw: Any) -> Candidate:
    base: dict[str, Any] = {
        "threshold_name": name,
        "current_value": 0.6,
        "proposed_value": 0.7,
        "direction": "increase",
        "confidence": "high",
        "expected_impact": "fewer false alarms",
        "evidence_count": 12,
        "sample_entry_ids": [f"{name}-{i}" for i in range(6)],
        "risk_assessment": "none replayed",
        "risk_flagged": False,
        "score": score,
        "min_value": 0.0,
        "max_value": 1.0,
    }
    base.update(kw)
    return Candidate(**base)


FACTS = CycleFacts(responded=1000, dismissals=300, response_rate=0.9, response_days=27, creep=False)


def test_rules__five_candidates__three_kept_ranked_by_expected_impact() -> None:
    out = rules_apply(
        candidates=[candidate(f"t{i}", s) for i, s in enumerate([5, 50, 20, 1, 30])], facts=FACTS, rules=RULES
    )
    assert [c.threshold_name for c in out.proposals] == ["t1", "t4", "t2"]
    assert out.system_health == "needs-attention"
    assert sum("only 3 proposals" in n for n in out.notes) == 2


def test_rules__dismissal_rate_below_15_percent__none_and_healthy() -> None:
    facts = CycleFacts(responded=1000, dismissals=149, response_rate=0.9, response_days=27, creep=False)
    out = rules_apply(candidates=[candidate("t", 10)], facts=facts, rules=RULES)
    assert out.proposals == [] and out.system_health == "healthy" and "Healthy" in out.summary


def test_rules__less_than_two_weeks_of_responses__baseline_nothing_proposed() -> None:
    facts = CycleFacts(responded=1000, dismissals=500, response_rate=0.9, response_days=10, creep=False)
    out = rules_apply(candidates=[candidate("t", 10)], facts=facts, rules=RULES)
    assert out.proposals == [] and "Baseline period" in out.summary


def test_rules__response_rate_below_60_percent__every_confidence_low_and_summary_says_why() -> None:
    facts = CycleFacts(responded=1000, dismissals=300, response_rate=0.4, response_days=27, creep=False)
    out = rules_apply(candidates=[candidate("a", 10), candidate("b", 5, confidence="medium")], facts=facts, rules=RULES)
    assert [c.confidence for c in out.proposals] == ["low", "low"]
    assert "Response rate 40%" in out.summary and "capped at low" in out.summary
    assert out.system_health == "degraded"


def test_rules__threshold_creep__needs_attention_said_in_summary() -> None:
    facts = CycleFacts(responded=1000, dismissals=100, response_rate=0.9, response_days=27, creep=True)
    out = rules_apply(candidates=[], facts=facts, rules=RULES)
    assert out.system_health == "needs-attention" and "Threshold creep" in out.summary


def test_rules__candidates_breaking_a_rule__dropped_with_the_reason() -> None:
    bad = [
        candidate("big", 9, proposed_value=0.9),
        candidate("thin", 8, sample_entry_ids=["a", "b", "c", "d"]),
        candidate("out", 7, current_value=0.95, proposed_value=1.05, max_value=1.0),
        candidate("wrongway", 6, proposed_value=0.5),
        candidate("norisk", 5, risk_assessment=" "),
    ]
    out = rules_apply(candidates=bad, facts=FACTS, rules=RULES)
    assert out.proposals == []
    assert len(out.notes) == 5
    assert "more than 20%" in out.notes[0] and "fewer than the minimum" in out.notes[1]


def test_candidate_problem__exactly_twenty_percent__allowed() -> None:
    assert candidate_problem(candidate("t", 1, proposed_value=0.72), RULES) is None
    assert candidate_problem(candidate("t", 1, proposed_value=0.7201), RULES) is not None


def test_threshold_creep__alpha__edge() -> None:
    window = weeks((12, 40), (12, 35), (5, 20), (4, 18))
    p = threshold_creep(window, change_week=MONDAYS[2], **CREEP).p_value
    assert p is not None and 0 < p < 1
    assert not threshold_creep(window, change_week=MONDAYS[2], min_escalations=20, alpha=p).fired  # p = alpha
    assert threshold_creep(window, change_week=MONDAYS[2], min_escalations=20, alpha=p * 1.000001).fired


def test_noise_floor__at_the_cap__edge() -> None:
    cap = rule("NOISE_FLOOR_MAX")
    totals = np.zeros(BINS + 1)
    totals[100:900] = 100
    at_cap = np.where(totals > 0, 100 * cap, 0.0)
    assert noise_floor(at_cap, totals, cap=cap) == pytest.approx(cap)  # a flat 5 %: slips
    assert noise_floor(at_cap * 1.002, totals, cap=cap) == 0.0  # a flat 5.01 %: not slips, nothing subtracted


def _noisy_histograms(seed: int) -> ReplayData:
    rng = np.random.default_rng(seed)
    k = 4
    negatives = rng.poisson(rng.uniform(0, 12, (k, BINS + 1))) * (rng.random((k, BINS + 1)) < 0.6)
    positives = rng.poisson(np.linspace(0, 6, BINS + 1), (k, BINS + 1)) * (rng.random((k, BINS + 1)) < 0.4)
    return ReplayData(
        negatives.astype(float), positives.astype(float), np.array([1.0, 1.0, 4.0, 1.0]), np.array([1, 0, 0, 1], bool)
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bootstrap__drawn_as_one_stack__each_resample_as_if_drawn_and_replayed_alone(seed: int) -> None:
    """The bootstrap draws its resamples in one call and replays them as one stack; every row must equal the
    resample a loop would have drawn (negatives, then positives, from the same generator) replayed on its own."""
    from tuner.analysis import _Curves, real_cases, replay_curves

    data = _noisy_histograms(seed)
    k0, cap = 500 + 100 * seed, 0.05
    boot = _Curves.build(data, k0, cap=cap, resamples=9, seed=seed)
    rng = np.random.default_rng(seed)
    for r in range(9):
        alone = ReplayData(
            rng.poisson(data.negatives).astype(float),
            rng.poisson(data.positives).astype(float),
            data.weights,
            data.gated,
        )
        point = _Curves.build(alone, k0, cap=cap)
        for name in ("fa", "miss", "lost", "real", "floors"):
            assert np.array_equal(getattr(boot, name)[r], getattr(point, name)[0]), (name, r)
        fa, _ = replay_curves(alone.negatives, alone.positives, alone.weights)
        excess, floors = real_cases(alone.negatives, alone.positives, alone.weights, alone.gated, cap=cap)
        assert np.array_equal(boot.fa[r], fa)
        assert boot.real[r] == pytest.approx(np.maximum(0.0, excess.sum(axis=1)).sum(), rel=1e-12)
        assert tuple(boot.floors[r]) == floors
