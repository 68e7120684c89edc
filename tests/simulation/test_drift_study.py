"""The drift study (simulation/drift_study.py): the same figures for the same seed, the canary's advantage where
the world moves in the week of a change, and the ``simulate --scenario drift`` command. No database."""

from io import StringIO
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from rollouts.arms import in_canary
from simulation import drift_study as drift_study_module
from simulation.drift_study import (
    BEFORE_AFTER,
    CANARY,
    DriftResult,
    DriftWorld,
    draw_sessions,
    drift_study,
    drift_table,
)


def _run(changes: int = 20, seed: int = 1, **world: Any) -> DriftResult:
    return drift_study(changes=changes, seed=seed, drift=DriftWorld.from_rules(**world))


def _verdicts(result: DriftResult) -> list[tuple[str, str, float | None]]:
    return [(m, j.verdict, j.hours) for m in (BEFORE_AFTER, CANARY) for j in result.judged[m]]


def test_drift_study__same_seed__same_verdicts_and_table() -> None:
    first, again, other = _run(seed=5), _run(seed=5), _run(seed=6)
    assert _verdicts(first) == _verdicts(again)
    assert drift_table(first) == drift_table(again)
    assert _verdicts(first) != _verdicts(other)
    assert [j.change.good for j in first.judged[CANARY]] == [True, False] * 10


def test_drift_study__world_worsens__before_after_rolls_back_good_changes_the_canary_keeps_them() -> None:
    """The world's rate rises 30-40 % at every change: before/after blames the good changes for it."""
    result = _run(drift=(0.30, 0.40))
    ba, canary = result.summary(BEFORE_AFTER), result.summary(CANARY)
    assert ba.good_changes == 10
    assert ba.good_rolled_back >= 5
    assert canary.good_rolled_back <= 2


def test_drift_study__world_improves__before_after_lets_bad_changes_through_the_canary_stops_them() -> None:
    """The world's rate falls 30-40 % at every change: before/after credits the bad changes with it."""
    result = _run(drift=(-0.40, -0.30))
    ba, canary = result.summary(BEFORE_AFTER), result.summary(CANARY)
    assert ba.bad_passed >= 5
    assert canary.bad_passed <= 2


def test_drift_study__strong_drift_both_ways__canary_fewer_wrong_verdicts() -> None:
    worse, better = _run(seed=2, drift=(0.30, 0.40)), _run(seed=3, drift=(-0.40, -0.30))
    ba = worse.summary(BEFORE_AFTER).wrong + better.summary(BEFORE_AFTER).wrong
    canary = worse.summary(CANARY).wrong + better.summary(CANARY).wrong
    assert canary < ba / 2


def test_draw_sessions__arms_by_the_real_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session is put in its arm by rollouts.arms.in_canary with the canary's share and version, and all
    of a session's decisions follow it: about the share of decisions are in the canary arm."""
    asked: list[tuple[str, float, int, bool]] = []

    def recorded(session_id: str, *, share: float, version: int) -> bool:
        answer = in_canary(session_id, share=share, version=version)
        asked.append((session_id, share, version, answer))
        return answer

    monkeypatch.setattr(drift_study_module, "in_canary", recorded)
    made, arm = draw_sessions(np.random.default_rng(1), DriftWorld.from_rules(), hours=7 * 24, version=9)
    assert len(made) == len(arm) > 10_000
    assert len({sid for sid, *_ in asked}) == len(asked) > 2_000  # distinct ids, fewer sessions than decisions
    assert {(share, version) for _, share, version, _ in asked} == {(0.2, 9)}
    assert 0.17 < arm.mean() < 0.23
    assert 0.17 < np.mean([answer for *_, answer in asked]) < 0.23


def test_drift_study__fewer_than_two_changes__refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        drift_study(changes=1, seed=1)


def test_simulate_drift_command__prints_the_table() -> None:
    out, err = StringIO(), StringIO()
    call_command("simulate", scenario="drift-study", changes=4, per_day=500, seed=3, stdout=out, stderr=err)
    text = out.getvalue()
    assert text.startswith("Of 4 changes made in a week the world drifted, before/after got ")
    assert "| before/after (14 d watch) | 4 |" in text
    assert "| canary (20% of sessions, 7 d) | 4 |" in text
    assert "Seed 3." in text and "500 decisions a day" in text
    assert "4/4" in err.getvalue()  # the progress bar, on stderr


def test_simulate_drift_command__one_change__refused() -> None:
    with pytest.raises(CommandError, match="--changes must be at least 2"):
        call_command("simulate", scenario="drift-study", changes=1, no_progress=True)


def test_simulate_command__drift_study_beside_the_closed_loops_drift_world() -> None:
    """The closed loop's own "drift" world stays a closed-loop scenario; the study has a name of its own."""
    from simulation.management.commands.simulate import Command

    parser = Command().create_parser("manage.py", "simulate")
    (scenario,) = [a for a in parser._actions if a.dest == "scenario"]
    assert scenario.choices is not None
    assert list(scenario.choices).count("drift") == 1 and list(scenario.choices).count("drift-study") == 1
