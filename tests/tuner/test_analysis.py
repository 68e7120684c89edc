"""The tuner's statistics on crafted data whose right answer is known (no database)."""

from typing import Any

import numpy as np

from tuner.analysis import (
    Candidate,
    CycleFacts,
    Objective,
    ReplayData,
    WeekStats,
    candidate_problem,
    candidate_range,
    choose_value,
    cluster_by_features,
    cluster_by_rules,
    replay_at,
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
TOLERANCE = Objective(kind="tolerance", miss_tolerance=0.05, miss_cost=5.0)


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


def test_choose_value__increase_would_lose_approved_cases__kept_within_tolerance_and_flagged() -> None:
    # 100 positives: tolerance allows 5 extra misses. Positives sit at 0.61..0.70 one every ~0.01.
    negatives = spaced(0.60, 0.70, 100)
    positives = spaced(0.61, 0.71, 10) + [0.9] * 90
    data = ReplayData.from_confidences(negatives=negatives, positives=positives)
    choice = choose_value(data, current=0.6, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is not None
    assert 0 < choice.miss_change <= 5
    assert choice.risk_flagged


def test_choose_value__reviewers_escalate_below_a_threshold_set_too_high__decrease() -> None:
    # 40 escalations (missed signals) between 0.70 and 0.80, approvals far below: 0.70 catches them all.
    data = ReplayData.from_confidences(
        negatives=spaced(0.1, 0.6, 50), positives=spaced(0.70, 0.80, 40) + spaced(0.8, 0.99, 40)
    )
    choice = choose_value(data, current=0.8, lo=0.0, hi=1.0, objective=TOLERANCE)
    assert choice is not None
    assert choice.direction == "decrease" and choice.value == 0.7
    assert choice.miss_change == -40 and choice.false_alarm_change == 0 and choice.confidence == "high"


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


def week(esc: int, dis: int, n: int = 100) -> WeekStats:
    return WeekStats("2026-01-05", n, n, n, n, approve=n - esc - dis, dismiss=dis, escalate=esc)


def test_threshold_creep__escalations_and_dismissals_both_fall__detected() -> None:
    assert threshold_creep([week(10, 40), week(10, 35), week(9, 30), week(2, 12)])
    assert not threshold_creep([week(10, 40), week(10, 35), week(9, 30), week(9, 12)])
    assert not threshold_creep([week(10, 40), week(10, 35), week(9, 30), week(2, 45)])


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
