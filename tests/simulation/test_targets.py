"""The issue's targets, checked on fixed seeds: outcomes of the whole loop (world, agent, reviewers, tuner,
approver, watchdog), not timings."""

from datetime import date, datetime, timedelta
from typing import Any

from loopsite.rules import rule


def _week(table: list[dict[str, Any]], n: int) -> dict[str, Any]:
    return table[n - 1]


def test_miscalibrated__2000_a_day__dismissal_rate_under_15_percent_by_week_6(run_scenario: Any) -> None:
    table = run_scenario("miscalibrated", weeks=10, per_day=2000)["table"]
    assert _week(table, 1)["dismissalRate"] > 0.30  # it starts badly miscalibrated
    assert all(row["dismissalRate"] < 0.15 for row in table[5:])


def test_miscalibrated__2000_a_day__true_miss_rate_never_10_percent_above_week_2(run_scenario: Any) -> None:
    table = run_scenario("miscalibrated", weeks=10, per_day=2000)["table"]
    baseline = _week(table, 2)["trueMissRate"]
    assert all(row["trueMissRate"] <= baseline * 1.10 for row in table), [r["trueMissRate"] for r in table]


def test_miscalibrated__2000_a_day__first_proposals_at_the_end_of_week_2(run_scenario: Any) -> None:
    """The seed's timing: two weeks of baseline, then the first proposals from the cycle at the start of week 3,
    although the last day or two of week 2 are still waiting for their answers."""
    run = run_scenario("miscalibrated", weeks=10, per_day=2000)
    cycles = [e for e in run["events"] if e["kind"] == "tuner"]
    first = cycles[0]
    assert datetime.fromisoformat(first["at"]).date() == date(2026, 1, 19)  # the Monday two weeks after the start
    assert first["systemHealth"] == "needs-attention" and first["proposals"], first


def test_miscalibrated__2000_a_day__no_cycle_with_more_than_3_changes_or_a_move_over_20_percent(
    run_scenario: Any,
) -> None:
    run = run_scenario("miscalibrated", weeks=10, per_day=2000)
    accepted = [p for p in run["proposals"] if p["status"] in ("accepted", "modified", "rolled_back")]
    assert accepted, "the tuner changed nothing"
    per_cycle: dict[int, int] = {}
    for p in accepted:
        per_cycle[p["run_id"]] = per_cycle.get(p["run_id"], 0) + 1
        moved = abs(p["decided_value"] - p["current_value"]) / p["current_value"]
        assert moved <= rule("MAX_MOVE_FRACTION") + 1e-9, p
    assert max(per_cycle.values()) <= 3
    assert all(row["accepted"] <= 3 for row in run["table"])
    # Between two consecutive versions no threshold moves more than 20 %.
    versions = run["versions"]
    for before, after in zip(versions, versions[1:], strict=False):
        for name, value in after["values"].items():
            assert abs(value - before["values"][name]) <= 0.20 * before["values"][name] + 1e-9


def test_miscalibrated__2000_a_day__no_proposals_in_the_last_two_weeks_of_ten(run_scenario: Any) -> None:
    table = run_scenario("miscalibrated", weeks=10, per_day=2000)["table"]
    assert [row["proposals"] for row in table[-2:]] == [0, 0]
    assert table[-1]["systemHealth"] == "healthy"


def test_over_correction__watchdog_rolls_the_bad_change_back_within_7_days(run_scenario: Any) -> None:
    run = run_scenario("over-correction", weeks=4, per_day=1000)
    (bad,) = [e for e in run["events"] if e["kind"] == "bad-change"]
    rollbacks = [e for e in run["events"] if e["kind"] == "rollback"]
    assert rollbacks, "the watchdog never rolled the change back"
    went_live = datetime.fromisoformat(bad["at"])
    rolled = datetime.fromisoformat(rollbacks[0]["at"])
    assert timedelta(0) < rolled - went_live <= timedelta(days=7)
    assert run["versions"][-1]["source"] == "rollback"
    assert run["versions"][-1]["values"] == run["versions"][0]["values"]


def test_over_correction_back_to_back__both_changes_rolled_back_within_7_days(run_scenario: Any) -> None:
    # A harmless change and, a minute later, the bad one: the second has no responses of its own before it, so the
    # watchdog judges both against v1 (the last version with enough responses) and rolls both back.
    run = run_scenario("over-correction-back-to-back", weeks=4, per_day=1000)
    (harmless,) = [e for e in run["events"] if e["kind"] == "harmless-change"]
    (bad,) = [e for e in run["events"] if e["kind"] == "bad-change"]
    assert datetime.fromisoformat(bad["at"]) - datetime.fromisoformat(harmless["at"]) == timedelta(minutes=1)
    rollbacks = [e for e in run["events"] if e["kind"] == "rollback"]
    assert rollbacks, "the watchdog never rolled the changes back"
    went_live = datetime.fromisoformat(bad["at"])
    rolled = datetime.fromisoformat(rollbacks[0]["at"])
    assert timedelta(0) < rolled - went_live <= timedelta(days=7)
    assert run["versions"][-1]["source"] == "rollback"
    assert run["versions"][-1]["values"] == run["versions"][0]["values"]
    changed = [p for p in run["proposals"] if p["threshold_name"] in (harmless["threshold"], bad["threshold"])]
    assert {p["status"] for p in changed if p["created_at"] >= went_live - timedelta(minutes=1)} == {"rolled_back"}


def test_drift__dismissal_rate_back_under_15_percent_within_3_cycles_after_the_shift(run_scenario: Any) -> None:
    table = run_scenario("drift", weeks=6, per_day=1000)["table"]
    shift_week = 3
    assert max(row["dismissalRate"] for row in table[shift_week - 1 : shift_week + 1]) > 0.15  # the shift hurts
    # Cycles run at the start of weeks 4, 5 and 6; week 6's decisions are made under the third one's thresholds.
    assert _week(table, shift_week + 3)["dismissalRate"] < 0.15


def test_simulate__same_seed__same_table(run_scenario: Any) -> None:
    first = run_scenario("miscalibrated", weeks=3, per_day=150, seed=5)["table"]
    again = run_scenario("miscalibrated", weeks=3, per_day=150, seed=5, fresh=True)["table"]
    assert again == first
    other = run_scenario("miscalibrated", weeks=3, per_day=150, seed=6)["table"]
    assert other != first


def test_rules__tuned_by_rule__the_loose_rule_is_raised_and_dismissals_fall(run_scenario: Any) -> None:
    # Each rule is judged on its own hits (issue 10, item 4): the loose amount rule rises every cycle, the
    # well-set velocity and blocklist rules stay. Its miss budget is counted in its own real cases (about half of
    # what the pooled rules had); at 400 a day its floor of one real case a cycle binds and it climbs in steps of
    # 0.01-0.02, so the test runs at 1,000 a day: 0.40 -> 0.432 -> 0.45 -> 0.471 -> 0.495 on seed 1.
    run = run_scenario("rules", weeks=6, per_day=1000)
    table = run["table"]
    raised = {p["threshold_name"] for p in run["proposals"] if p["status"] == "accepted"}
    assert raised == {"amount_rule"}
    assert table[-1]["thresholds"]["amount_rule"] > table[0]["thresholds"]["amount_rule"]
    assert table[-1]["thresholds"]["velocity_rule"] == table[0]["thresholds"]["velocity_rule"]
    assert table[-1]["dismissalRate"] < 0.15 < 0.30 < table[0]["dismissalRate"]


def test_low_response__40_percent_answered__tuner_reports_degraded(run_scenario: Any) -> None:
    table = run_scenario("low-response", weeks=4, per_day=400)["table"]
    assert all(0.35 <= row["responseRate"] <= 0.45 for row in table)
    assert table[-1]["systemHealth"] == "degraded"


def _miss_budget(table: list[dict[str, Any]]) -> tuple[int, float, float]:
    """The weeks before the first accepted change are the reference; their true miss rate, and the most the
    budget allows: 10 % more (MISS_TOLERANCE), or MISS_BUDGET_SLACK of the real cases when that is larger."""
    changed = next(i for i, row in enumerate(table) if row["accepted"])
    reference = table[:changed]
    rate = sum(r["trueMisses"] for r in reference) / sum(r["positives"] for r in reference)
    return changed, rate, rate + max(rule("MISS_TOLERANCE") * rate, rule("MISS_BUDGET_SLACK"))


def test_compounding__10_weeks__true_miss_rate_stays_within_the_budget_of_the_reference_weeks(
    run_scenario: Any,
) -> None:
    # A loop that allows a few more misses every cycle (the old rule: 5 % of the weighted positives each cycle)
    # walked this agent's flag threshold into the flag-worthy cases: 4 % true misses against 2 % before.
    run = run_scenario("compounding", weeks=10, per_day=1000)
    table = run["table"]
    changed, rate, allowed = _miss_budget(table)
    assert changed >= 2 and table[0]["dismissalRate"] > 0.5  # it starts far too loose
    # Week by week, the true miss rate of the weeks since the first change, together: one week's cases are a
    # draw (a handful of misses either way), the budget is on the rate the thresholds lead to.
    rates = [round(r["trueMisses"] / r["positives"], 4) for r in table]
    for week in range(changed, len(table)):
        since = table[changed : week + 1]
        misses, positives = sum(r["trueMisses"] for r in since), sum(r["positives"] for r in since)
        assert misses <= allowed * positives, (week + 1, rate, allowed, rates)
    # It still cuts false alarms (by more than 40 %), and more than one cycle changed something.
    assert table[-1]["trueFalseAlarms"] < 0.6 * table[0]["trueFalseAlarms"]
    assert len([p for p in run["proposals"] if p["status"] == "accepted"]) >= 2
