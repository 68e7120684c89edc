"""The tuner's rules (contract rules 1-5 and 10) pinned to their edges: the accepted edge and the refused one, with
the numbers the settings hold. Pure: no database."""

from typing import Any

import pytest

from loopsite.rules import rules
from tests.tuner.test_analysis import candidate
from tuner.analysis import (
    EPS,
    Budget,
    Choice,
    CycleFacts,
    Objective,
    Reference,
    Replay,
    candidate_problem,
    candidate_range,
    confidence_label,
    grid_range,
    impact_score,
    in_baseline,
    miss_rule_checks,
    miss_rules_problem,
    risk_reasons,
    rules_apply,
)

RULES: dict[str, Any] = dict(rules())
RULED = Objective(
    miss_tolerance=RULES["MISS_TOLERANCE"],
    miss_slack=RULES["MISS_BUDGET_SLACK"],
    miss_slack_cases=RULES["MISS_BUDGET_SLACK_CASES"],
)


def test_rules__the_contracts_numbers__as_the_settings_hold_them() -> None:
    assert RULES["MAX_PROPOSALS_PER_CYCLE"] == 3
    assert RULES["MIN_EVIDENCE_ENTRIES"] == 5
    assert RULES["MAX_MOVE_FRACTION"] == 0.20
    assert RULES["HEALTHY_DISMISSAL_RATE"] == 0.15
    assert RULES["MIN_RESPONSE_RATE"] == 0.60
    assert RULES["BASELINE_WEEKS"] == 2


def facts(**kw: Any) -> CycleFacts:
    base: dict[str, Any] = {"responded": 1000, "dismissals": 300, "response_rate": 0.9, "response_days": 27.0}
    base.update(kw)
    return CycleFacts(**base)


# --- Rule 2: at least 5 cited entries ------------------------------------------------------------------------


def test_candidate_problem__exactly_five_cited_entries__accepted() -> None:
    ids = [f"e{i}" for i in range(5)]
    assert candidate_problem(candidate("t", 1.0, evidence_count=5, sample_entry_ids=ids), RULES) is None


def test_candidate_problem__four_cited_entries__refused() -> None:
    ids = [f"e{i}" for i in range(4)]
    assert candidate_problem(candidate("t", 1.0, evidence_count=5, sample_entry_ids=ids), RULES) == (
        "cites 4 entries (evidence 5), fewer than the minimum"
    )


def test_candidate_problem__five_citations_of_four_distinct_entries__refused() -> None:
    ids = ["e0", "e1", "e2", "e3", "e3"]
    assert candidate_problem(candidate("t", 1.0, evidence_count=5, sample_entry_ids=ids), RULES) is not None


def test_candidate_problem__evidence_count_four_with_five_ids__refused() -> None:
    ids = [f"e{i}" for i in range(5)]
    assert candidate_problem(candidate("t", 1.0, evidence_count=4, sample_entry_ids=ids), RULES) == (
        "cites 5 entries (evidence 4), fewer than the minimum"
    )


# --- Rule 3 and the bounds -----------------------------------------------------------------------------------


def test_candidate_problem__a_valid_decrease__accepted() -> None:
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.5, direction="decrease"), RULES) is None


@pytest.mark.parametrize("direction", ["increase", "decrease"])
def test_candidate_problem__no_move__refused(direction: str) -> None:
    problem = candidate_problem(candidate("t", 1.0, proposed_value=0.6, direction=direction), RULES)
    assert problem == f"direction {direction} does not match 0.6 -> 0.6"


def test_candidate_problem__direction_against_the_move__refused() -> None:
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.5, direction="increase"), RULES) is not None
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.7, direction="decrease"), RULES) is not None


def test_candidate_problem__unknown_direction__refused() -> None:
    assert (
        candidate_problem(candidate("t", 1.0, direction="sideways"), RULES)
        == "direction 'sideways' is not increase/decrease"
    )


def test_candidate_problem__exactly_at_the_minimum__accepted_just_below__refused() -> None:
    at_min = candidate("t", 1.0, current_value=0.55, proposed_value=0.5, direction="decrease", min_value=0.5)
    assert candidate_problem(at_min, RULES) is None
    below = candidate("t", 1.0, current_value=0.55, proposed_value=0.4999, direction="decrease", min_value=0.5)
    assert candidate_problem(below, RULES) == "proposed value 0.4999 is outside the bounds [0.5, 1.0]"


def test_candidate_problem__exactly_at_the_maximum__accepted_just_above__refused() -> None:
    assert candidate_problem(candidate("t", 1.0, current_value=0.85, proposed_value=0.9, max_value=0.9), RULES) is None
    above = candidate("t", 1.0, current_value=0.85, proposed_value=0.9001, max_value=0.9)
    assert candidate_problem(above, RULES) == "proposed value 0.9001 is outside the bounds [0.0, 0.9]"


def test_candidate_problem__the_cycles_allowed_range__both_edges_in_just_past_each_out() -> None:
    # The range the guard allows this cycle (from the value at its start) replaces the 20 % of today's value.
    kw: dict[str, Any] = {"current_value": 0.6, "allowed_min": 0.5, "allowed_max": 0.8}
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.8, **kw), RULES) is None  # 33 % of today's: allowed
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.5, direction="decrease", **kw), RULES) is None
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.8001, **kw), RULES) == (
        "proposed value 0.8001 is outside the range allowed this cycle [0.5, 0.8]"
    )
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.4999, direction="decrease", **kw), RULES) is not None


def test_candidate_problem__half_an_allowed_range__the_twenty_percent_rule() -> None:
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.8, allowed_max=0.8), RULES) is not None
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.8, allowed_min=0.5), RULES) is not None
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.72, allowed_max=0.8), RULES) is None


def test_candidate_problem__exactly_twenty_percent_down__accepted_just_past__refused() -> None:
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.48, direction="decrease"), RULES) is None
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.4799, direction="decrease"), RULES) == (
        "moves 20% of the current value, more than 20%"
    )


@pytest.mark.parametrize("confidence", ["low", "medium", "high"])
def test_candidate_problem__each_confidence_label__accepted(confidence: str) -> None:
    assert candidate_problem(candidate("t", 1.0, confidence=confidence), RULES) is None


def test_candidate_problem__unknown_confidence__refused() -> None:
    assert (
        candidate_problem(candidate("t", 1.0, confidence="certain"), RULES)
        == "confidence 'certain' is not low/medium/high"
    )


def test_candidate_problem__blank_risk_assessment__refused() -> None:
    assert candidate_problem(candidate("t", 1.0, risk_assessment=" \n"), RULES) == "no risk assessment"
    assert candidate_problem(candidate("t", 1.0, risk_assessment="x"), RULES) is None


def test_candidate_range__within_the_bounds__twenty_percent_either_side() -> None:
    assert candidate_range(0.6, 0.0, 1.0, 0.2) == (0.48, 0.72)
    assert candidate_range(0.5, 0.0, 1.0, 0.1) == (0.45, 0.55)


def test_candidate_range__bounds_tighter_than_twenty_percent__the_bounds() -> None:
    assert candidate_range(0.6, 0.55, 0.65, 0.2) == (0.55, 0.65)


def test_grid_range__float_noise_at_a_grid_point__kept_on_it() -> None:
    # 0.6 * 0.8 is 0.48 on paper and 0.47999999999999998 in binary: still 0.48.
    assert grid_range(0.6 * 0.8, 0.6 * 1.2) == (0.48, 0.72)
    assert grid_range(0.4805, 0.7195) == (0.481, 0.719)  # between grid points: rounded inward


# --- Confidence labels and the ranking ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "label"), [(1.0, "high"), (0.95, "high"), (0.9499, "medium"), (0.8, "medium"), (0.7999, "low")]
)
def test_confidence_label__each_edge__its_label(share: float, label: str) -> None:
    assert confidence_label(share) == label


def choice(
    *,
    direction: str = "increase",
    misses: tuple[float, float] = (20.0, 20.0),
    false_alarms: tuple[float, float] = (100.0, 60.0),
    lost_share: float = 0.0,
    budget: Budget | None = None,
) -> Choice:
    return Choice(
        value=0.7,
        direction=direction,
        current=Replay(false_alarms[0], misses[0]),
        proposed=Replay(false_alarms[1], misses[1]),
        false_alarm_interval=(-50.0, -30.0),
        miss_interval=(0.0, 1.0),
        beats_share=0.99,
        confidence="high",
        risk_flagged=False,
        real_cases=100.0,
        confirmed_lost_share=lost_share,
        budget=budget,
    )


def test_impact_score__false_alarms_cut_plus_misses_weighed__the_ranking_score() -> None:
    # 40 false alarms cut, 2 misses added at 5 false alarms each: 40 - 10.
    assert impact_score(choice(misses=(20.0, 22.0)), 5.0) == 30.0
    # A decrease: 10 false alarms added, 4 misses caught: -10 + 20.
    assert impact_score(choice(false_alarms=(60.0, 70.0), misses=(20.0, 16.0)), 5.0) == 10.0


def test_miss_rules_problem__a_decrease__never_refused() -> None:
    assert miss_rules_problem(choice(direction="decrease", misses=(20.0, 40.0), lost_share=1.0), RULED) is None


def test_miss_rules_problem__within_every_limit__none() -> None:
    assert miss_rules_problem(choice(misses=(20.0, 22.0), lost_share=0.10), RULED) is None


def test_miss_rules_problem__losing_more_confirmed_cases_than_the_tolerance__refused() -> None:
    problem = miss_rules_problem(choice(lost_share=0.11), RULED)
    assert problem == "it loses 11% of the cases reviewers confirmed at today's value, more than the tolerance of 10%"


def test_miss_rules_problem__more_misses_than_a_cycle_allows__refused() -> None:
    problem = miss_rules_problem(choice(misses=(20.0, 23.0)), RULED)
    assert problem == (
        "it adds 3 real missed signal(s) to today's 20, more than the tolerance of 10% allows in one cycle"
    )


def test_miss_rules_problem__past_the_budget__refused_and_within_it__none() -> None:
    reference = Reference(0.2, 20.0, 100.0, "March")
    over = Budget(reference=reference, allowed_rate=0.21, rate_today=0.2, rate_proposed=0.22, remaining=1.0)
    assert miss_rules_problem(choice(misses=(20.0, 22.0), budget=over), RULED) == (
        "it would put misses at 22.0% of real cases, above the 21.0% the reference of March allows"
    )
    within = Budget(reference=reference, allowed_rate=0.22, rate_today=0.2, rate_proposed=0.22, remaining=2.0)
    assert miss_rules_problem(choice(misses=(20.0, 22.0), budget=within), RULED) is None


def test_miss_rules_problem__budget_counts_what_accepted_changes_added() -> None:
    # The window shows 20 misses, but the reference plus what accepted changes added says 21: +1 passes 0.22.
    reference = Reference(0.2, 20.0, 100.0, "March", spent=0.01)
    budget = Budget(reference=reference, allowed_rate=0.215, rate_today=0.2, rate_proposed=0.21, remaining=1.0)
    assert miss_rules_problem(choice(misses=(20.0, 20.5), budget=budget), RULED) is None
    assert miss_rules_problem(choice(misses=(20.0, 21.0), budget=budget), RULED) is not None


def test_reference_allowed_rate__one_real_case_or_none__the_slack_follows() -> None:
    assert Reference(0.0, 0, 0, "r").allowed_rate(RULED, real=1.0) == 1.0  # one case of one
    assert Reference(0.0, 0, 0, "r").allowed_rate(RULED, real=0.0) == 0.003  # no real case: the share alone


def test_cycle_facts_dismissal_rate__no_responses__zero() -> None:
    assert facts(responded=0, dismissals=0).dismissal_rate == 0.0
    assert facts(responded=1000, dismissals=150).dismissal_rate == 0.15


# --- Rules 1, 4 and the baseline in rules_apply ----------------------------------------------------------------


def test_in_baseline__exactly_fourteen_days__over_just_under__baseline() -> None:
    assert not in_baseline(14.0, RULES)
    assert in_baseline(13.99, RULES)


def test_rules_apply__exactly_fourteen_days_of_responses__proposes() -> None:
    out = rules_apply(candidates=[candidate("t", 1.0)], facts=facts(response_days=14.0), rules=RULES)
    assert [c.threshold_name for c in out.proposals] == ["t"]


def test_rules_apply__just_under_fourteen_days__baseline_and_says_so() -> None:
    out = rules_apply(candidates=[candidate("t", 1.0)], facts=facts(response_days=13.99), rules=RULES)
    assert (out.proposals, out.system_health) == ([], "baseline")
    assert out.summary == (
        "Baseline period: the window holds 14.0 days of decisions with responses, fewer than the 2 weeks needed "
        "before the first proposal. Nothing proposed."
    )


def test_rules_apply__exactly_15_percent_dismissals__proposes() -> None:
    out = rules_apply(candidates=[candidate("t", 1.0)], facts=facts(dismissals=150), rules=RULES)
    assert [c.threshold_name for c in out.proposals] == ["t"]
    assert out.system_health == "needs-attention"
    assert out.summary == "1 proposal(s); dismissal rate 15.0% over 1000 responses."


def test_rules_apply__just_under_15_percent__healthy_nothing_proposed() -> None:
    out = rules_apply(candidates=[candidate("t", 1.0)], facts=facts(dismissals=149), rules=RULES)
    assert (out.proposals, out.system_health) == ([], "healthy")
    assert out.summary == "Healthy: dismissal rate 14.9% over 1000 responses, below 15%. Nothing proposed."


def test_rules_apply__healthy_with_creep__needs_attention_and_both_said() -> None:
    out = rules_apply(candidates=[], facts=facts(dismissals=100, creep=True, creep_text="p = 0.01"), rules=RULES)
    assert out.system_health == "needs-attention"
    assert out.summary.startswith("Healthy: dismissal rate 10.0% over 1000 responses, below 15%. Nothing proposed. ")
    assert "Threshold creep: escalations have fallen since a threshold was raised (p = 0.01);" in out.summary


def test_rules_apply__locked__said_after_every_summary() -> None:
    locked = "Locked by alice on 2026-03-02: audit."
    healthy = rules_apply(candidates=[], facts=facts(dismissals=10, locked=locked), rules=RULES)
    assert healthy.summary.endswith(f"Nothing proposed. {locked}")
    baseline = rules_apply(candidates=[], facts=facts(response_days=3.0, locked=locked), rules=RULES)
    assert baseline.summary.endswith(f"Nothing proposed. {locked}")
    unlocked = rules_apply(candidates=[], facts=facts(dismissals=10), rules=RULES)
    assert unlocked.summary.endswith("Nothing proposed.")


def test_rules_apply__locked_with_candidates__none_proposed_and_the_withheld_noted() -> None:
    locked = "Locked by alice."
    cands = [candidate(f"t{i}", float(i)) for i in range(5)]
    out = rules_apply(candidates=cands, facts=facts(locked=locked, changes_left=1), rules=RULES)
    assert out.proposals == []
    assert out.summary == (
        "0 proposal(s); dismissal rate 30.0% over 1000 responses. Locked by alice. The replay found 3 change(s) it "
        "would otherwise propose (see the notes)."
    )
    assert [n for n in out.notes if n.startswith("not proposed")] == [
        "not proposed (config locked): t4 0.6 -> 0.7",
        "not proposed (config locked): t3 0.6 -> 0.7",
        "not proposed (config locked): t2 0.6 -> 0.7",
    ]


def test_rules_apply__three_kept_of_four__ranked_by_score_highest_first() -> None:
    cands = [candidate("a", 1.0), candidate("b", 4.0), candidate("c", -2.0), candidate("d", 3.0)]
    out = rules_apply(candidates=cands, facts=facts(), rules=RULES)
    assert [c.threshold_name for c in out.proposals] == ["b", "d", "a"]
    assert out.notes == ["dropped c: only 3 proposals a cycle, ranked by expected impact"]


def test_rules_apply__equal_scores__ranked_by_name() -> None:
    out = rules_apply(candidates=[candidate("b", 1.0), candidate("a", 1.0)], facts=facts(), rules=RULES)
    assert [c.threshold_name for c in out.proposals] == ["a", "b"]


def test_rules_apply__two_for_one_threshold__the_higher_score_kept() -> None:
    low, high = candidate("t", 1.0, proposed_value=0.65), candidate("t", 2.0, proposed_value=0.7)
    out = rules_apply(candidates=[low, high], facts=facts(), rules=RULES)
    assert [c.proposed_value for c in out.proposals] == [0.7]
    assert out.notes == ["dropped a second proposal for t: one change per threshold a cycle"]


def test_rules_apply__changes_left_this_cycle__caps_the_proposals() -> None:
    cands = [candidate(f"t{i}", float(i)) for i in range(5)]
    one = rules_apply(candidates=cands, facts=facts(changes_left=1), rules=RULES)
    assert [c.threshold_name for c in one.proposals] == ["t4"]
    assert "dropped t3: only 1 more change(s) from proposals may go live this cycle" in one.notes
    three = rules_apply(candidates=cands, facts=facts(changes_left=3), rules=RULES)
    assert len(three.proposals) == 3
    assert "dropped t1: only 3 proposals a cycle, ranked by expected impact" in three.notes


def test_rules_apply__no_change_left__nothing_and_says_why() -> None:
    out = rules_apply(candidates=[candidate("t", 1.0)], facts=facts(changes_left=0), rules=RULES)
    assert out.proposals == []
    assert out.summary == (
        "0 proposal(s); dismissal rate 30.0% over 1000 responses. 3 changes from proposals have already gone live "
        "this cycle, the most rule 3 allows: nothing more is proposed until the next cycle."
    )


def test_rules_apply__one_change_left_and_nothing_beats_today__says_so() -> None:
    out = rules_apply(candidates=[], facts=facts(changes_left=1), rules=RULES)
    assert out.summary == (
        "0 proposal(s); dismissal rate 30.0% over 1000 responses. No change beat the current thresholds on the replay."
    )


def test_rules_apply__held_by_the_budget__said_instead_of_nothing_beat() -> None:
    out = rules_apply(candidates=[], facts=facts(held=("t held at 0.7.",)), rules=RULES)
    assert out.summary == "0 proposal(s); dismissal rate 30.0% over 1000 responses. t held at 0.7."


def test_rules_apply__exactly_60_percent_responses__confidences_kept() -> None:
    out = rules_apply(
        candidates=[candidate("t", 1.0, confidence="medium")], facts=facts(response_rate=0.6), rules=RULES
    )
    assert [c.confidence for c in out.proposals] == ["medium"]
    assert out.system_health == "needs-attention"


def test_rules_apply__just_under_60_percent__capped_at_low_and_degraded() -> None:
    out = rules_apply(
        candidates=[candidate("t", 1.0, confidence="high")], facts=facts(response_rate=0.5999), rules=RULES
    )
    assert [c.confidence for c in out.proposals] == ["low"]
    assert out.system_health == "degraded"


def test_rules_apply__response_rate_unknown__not_degraded() -> None:
    out = rules_apply(candidates=[candidate("t", 1.0)], facts=facts(response_rate=None), rules=RULES)
    assert out.system_health == "needs-attention" and out.proposals[0].confidence == "high"


def test_rules_apply__creep__increases_dropped_decreases_kept_and_said() -> None:
    cands = [candidate("up", 2.0), candidate("down", 1.0, proposed_value=0.5, direction="decrease")]
    out = rules_apply(candidates=cands, facts=facts(creep=True), rules=RULES)
    assert [c.threshold_name for c in out.proposals] == ["down"]
    assert out.notes == ["dropped up increase to 0.7: threshold creep, no rise until it clears"]
    assert "responses. Threshold creep: escalations have fallen" in out.summary


def test_rules_apply__risk_flagged__named_in_the_summary() -> None:
    cands = [candidate("a", 2.0, risk_flagged=True), candidate("b", 1.0)]
    out = rules_apply(candidates=cands, facts=facts(), rules=RULES)
    assert out.summary == (
        "2 proposal(s); dismissal rate 30.0% over 1000 responses. Flagged as a risk to missed signals (see each risk "
        "assessment): a."
    )


# --- The tolerances at their exact edges ------------------------------------------------------------------------


def checks(**kw: Any) -> dict[str, bool]:
    base: dict[str, Any] = {"misses_today": 20.0, "misses_new": 20.0, "lost_share": 0.0, "real": 100.0}
    base.update({"allowed_rate": None, **kw})
    return {k: bool(v) for k, v in miss_rule_checks(objective=RULED, **base).items()}


def test_miss_rule_checks__exactly_at_each_limit_plus_the_float_tolerance__passes() -> None:
    assert checks(lost_share=0.10 + EPS)["confirmed"]
    assert checks(misses_today=0.0, misses_new=1.0 + EPS)["cycle"]  # the one-case slack
    assert checks(misses_new=25.0 + EPS, allowed_rate=0.25)["budget"]
    # A move adding no more than the tolerance passes the budget whatever was spent before.
    assert checks(misses_today=0.0, misses_new=EPS, allowed_rate=0.0, committed_rate=0.5)["budget"]


def test_miss_rule_checks__committed_rate_left_out__nothing_spent() -> None:
    passed = miss_rule_checks(
        misses_today=20.0, misses_new=22.0, lost_share=0.0, real=100.0, objective=RULED, allowed_rate=0.22
    )
    assert bool(passed["budget"])


def test_risk_reasons__exactly_at_each_limit_plus_the_float_tolerance__not_flagged() -> None:
    kw: dict[str, Any] = {"miss_low": 0.1, "misses_today": 0.0, "material_share": 0.1}
    assert risk_reasons(miss_change=0.5 + EPS, remaining=None, least=0.5, **kw) == ()
    assert risk_reasons(miss_change=5.0 + EPS, remaining=10.0, least=10.0, **kw) == ()


def test_risk_reasons__least_left_out__any_rise_above_nothing_is_material() -> None:
    assert risk_reasons(miss_change=0.5, miss_low=0.1, misses_today=0.0, remaining=None, material_share=0.1) == (
        "material",
    )


def test_candidate_problem__exactly_at_each_tolerance__accepted() -> None:
    at_min = candidate("t", 1.0, current_value=0.55, proposed_value=0.5 - 1e-12, direction="decrease", min_value=0.5)
    assert candidate_problem(at_min, RULES) is None
    at_max = candidate("t", 1.0, current_value=0.85, proposed_value=0.9 + 1e-12, max_value=0.9)
    assert candidate_problem(at_max, RULES) is None
    kw: dict[str, Any] = {"allowed_min": 0.5, "allowed_max": 0.8}
    assert candidate_problem(candidate("t", 1.0, proposed_value=0.8 + 1e-9, **kw), RULES) is None
    low = candidate("t", 1.0, proposed_value=0.5 - 1e-9, direction="decrease", **kw)
    assert candidate_problem(low, RULES) is None
    # 0.1 is a value for which the move to the tolerance's edge is exact in binary.
    edge = candidate("t", 1.0, current_value=0.1, proposed_value=0.1 + (0.2 * 0.1 + 1e-9))
    assert (0.1 + (0.2 * 0.1 + 1e-9)) - 0.1 == 0.2 * 0.1 + 1e-9
    assert candidate_problem(edge, RULES) is None


def test_candidate_problem__from_zero__any_move_too_far() -> None:
    problem = candidate_problem(candidate("t", 1.0, current_value=0.0, proposed_value=0.1), RULES)
    assert problem == "moves inf% of the current value, more than 20%"


def test_rules_apply__baseline_and_healthy__no_notes() -> None:
    bad = candidate("t", 1.0, evidence_count=1)
    assert rules_apply(candidates=[bad], facts=facts(response_days=3.0), rules=RULES).notes == []
    assert rules_apply(candidates=[bad], facts=facts(dismissals=10), rules=RULES).notes == []


def test_rules_apply__low_response_rate__the_whole_sentence() -> None:
    out = rules_apply(candidates=[candidate("t", 1.0)], facts=facts(response_rate=0.5), rules=RULES)
    assert out.summary == (
        "1 proposal(s); dismissal rate 30.0% over 1000 responses. Response rate 50% is below 60%: the patterns are"
        " noisy, so every confidence is capped at low. Fix the review input before trusting the loop."
    )


def test_rules_apply__two_flagged__both_named() -> None:
    cands = [candidate("a", 2.0, risk_flagged=True), candidate("b", 1.0, risk_flagged=True)]
    out = rules_apply(candidates=cands, facts=facts(), rules=RULES)
    assert out.summary.endswith("Flagged as a risk to missed signals (see each risk assessment): a, b.")
