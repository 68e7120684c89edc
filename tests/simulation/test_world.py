"""The synthetic world, the reference agent and the reviewers: pure, no database."""

import numpy as np

from simulation.world import SCENARIOS, TruthCounts, World, agent_decide, reviewer_response, scenario_get


def test_world_cases__same_seed_and_day__same_cases() -> None:
    a = World(scenario_get("miscalibrated"), seed=3).cases(5, 500)
    b = World(scenario_get("miscalibrated"), seed=3).cases(5, 500)
    assert np.array_equal(a.truth, b.truth)
    assert np.array_equal(a.signals["confidence"], b.signals["confidence"])
    assert np.array_equal(a.u_respond, b.u_respond)


def test_world_cases__other_seed__other_cases() -> None:
    a = World(scenario_get("miscalibrated"), seed=3).cases(5, 500)
    b = World(scenario_get("miscalibrated"), seed=4).cases(5, 500)
    assert not np.array_equal(a.signals["confidence"], b.signals["confidence"])


def test_world_cases__class_counts_are_exact_each_day() -> None:
    cases = World(scenario_get("miscalibrated"), seed=1).cases(0, 2000)
    assert np.bincount(cases.truth).tolist() == [1600, 300, 100]
    assert np.all(np.diff(cases.seconds) >= 0)


def test_agent_decide__scored__strongest_action_whose_threshold_is_reached() -> None:
    scenario = scenario_get("miscalibrated")
    values = {"flag_threshold": 0.5, "escalate_threshold": 0.8}
    decided = agent_decide(scenario, {"confidence": np.array([0.2, 0.5, 0.79, 0.8, 0.95])}, values)
    assert decided.action.tolist() == [0, 1, 1, 2, 2]
    assert decided.threshold_name == [
        "flag_threshold",
        "flag_threshold",
        "flag_threshold",
        "escalate_threshold",
        "escalate_threshold",
    ]
    assert decided.threshold_used.tolist() == [0.5, 0.5, 0.5, 0.8, 0.8]


def test_agent_decide__rules__names_the_rule_that_fired() -> None:
    scenario = scenario_get("rules")
    values = {"amount_rule": 0.4, "velocity_rule": 0.6, "blocklist_rule": 0.9}
    signals = {
        "amount": np.array([0.5, 0.1, 0.5]),
        "velocity": np.array([0.1, 0.7, 0.7]),
        "risk": np.array([0.1, 0.1, 0.95]),
    }
    decided = agent_decide(scenario, signals, values)
    assert [scenario.actions[a] for a in decided.action] == ["review", "review", "block"]
    assert decided.threshold_name == ["amount_rule", "velocity_rule", "blocklist_rule"]
    assert decided.matched_rules == [
        ["high_amount"],
        ["high_velocity"],
        ["high_amount", "high_velocity", "blocklist_match"],
    ]


def test_reviewer_response__maps_truth_to_the_human_response() -> None:
    s = scenario_get("miscalibrated")
    kw = {"u_noise": 0.9, "u_modify": 0.9, "delay_hours": 30.0}
    assert reviewer_response(s, taken=1, truth=1, **kw).action == "approve"
    assert reviewer_response(s, taken=1, truth=0, **kw).action == "dismiss"
    assert reviewer_response(s, taken=0, truth=1, **kw).action == "escalate"
    modified = reviewer_response(s, taken=2, truth=1, u_noise=0.9, u_modify=0.1, delay_hours=30.0)
    assert (modified.action, modified.modified_action) == ("modify", "flag")


def test_reviewer_response__binary_mode__never_modifies() -> None:
    s = scenario_get("low-response")
    assert s.binary and s.response_rate == 0.40
    review = reviewer_response(s, taken=2, truth=1, u_noise=0.9, u_modify=0.0, delay_hours=30.0)
    assert review.action == "dismiss"


def test_reviewer_response__slip__calls_a_right_alert_wrong() -> None:
    s = scenario_get("miscalibrated")
    assert reviewer_response(s, taken=1, truth=1, u_noise=0.0, u_modify=0.9, delay_hours=30.0).action == "dismiss"


def test_truth_counts__false_alarms_and_misses_against_the_hidden_truth() -> None:
    counts = TruthCounts()
    counts.add(np.array([1, 1, 0, 0, 2]), np.array([0, 1, 1, 0, 2]))
    assert (counts.fired, counts.false_alarms, counts.positives, counts.misses) == (3, 1, 3, 1)
    assert counts.false_alarm_rate == round(1 / 3, 4)
    assert counts.miss_rate == round(1 / 3, 4)


def test_scenarios__all_seven_exist() -> None:
    assert set(SCENARIOS) == {
        "miscalibrated",
        "drift",
        "over-correction",
        "over-correction-back-to-back",
        "compounding",
        "rules",
        "low-response",
    }
