"""The watchdog's rule (contract rule 7) pinned at its edges: the minimum of responses, the tolerance, alpha, the
degenerate rates (no errors, all errors, no variance) and the watch window, each with its verdict."""

import logging
import math
from dataclasses import asdict
from datetime import timedelta
from statistics import NormalDist
from typing import Any

import pytest

from approvals.models import VersionWatch
from approvals.selectors import ErrorCounts
from approvals.watchdog import _restore_target, watchdog_assess, watchdog_pass, watches_ensure
from loopsite.rules import rule
from tests.approvals.conftest import log_responded
from tests.approvals.test_watchdog import CHANGED_AT, _accept, _agent_with_baseline
from tests.factories import NOW, make_agent
from thresholds.models import ConfigVersion

MIN = 50


def assess(new: ErrorCounts | tuple[int, int], base: ErrorCounts | tuple[int, int], **kw: Any) -> Any:
    args: dict[str, Any] = {"min_responses": MIN, "tolerance": 0.10, "alpha": 0.05, **kw}
    as_counts = [c if isinstance(c, ErrorCounts) else ErrorCounts(*c) for c in (new, base)]
    return watchdog_assess(new=as_counts[0], base=as_counts[1], **args)


def test_watchdog_rules__the_contracts_numbers__as_the_settings_hold_them() -> None:
    assert rule("WATCHDOG_MIN_RESPONSES") == 50
    assert rule("WATCHDOG_TOLERANCE") == 0.10
    assert rule("WATCHDOG_ALPHA") == 0.05


def test_watchdog_assess__exactly_the_minimum_of_responses__judged() -> None:
    assert assess((50, 50), (10, 100)).verdict == "rollback"


def test_watchdog_assess__one_short_of_the_minimum__waiting_with_its_figures() -> None:
    result = assess((49, 49), (10, 100))
    assert result.verdict == "waiting"
    assert (result.limit_rate, result.z, result.p_value, result.p_good) == (None, None, None, None)
    assert (result.new_responses, result.min_responses) == (49, 50)


def test_watchdog_assess__a_baseline_of_one_response__compared() -> None:
    assert assess((30, 60), (0, 1)).verdict == "rollback"


def test_watchdog_assess__every_figure__recorded() -> None:
    new = ErrorCounts(errors=17, responses=200, weighted_errors=125.0, weight=1100.0, weight_sq=10100.0, sampled=100)
    base = ErrorCounts(errors=12, responses=200, weighted_errors=30.0, weight=1100.0, weight_sq=10100.0, sampled=100)
    result = assess(new, base)
    p1, p0 = 125 / 1100, 30 / 1100
    limit = 1.1 * p0
    n_eff = 1100**2 / 10100
    z = (p1 - limit) / math.sqrt(max(p1 * (1 - p1), limit * (1 - limit)) / n_eff + 1.1**2 * p0 * (1 - p0) / n_eff)
    expected = {
        "verdict": "rollback",
        "new_errors": 17,
        "new_responses": 200,
        "base_errors": 12,
        "base_responses": 200,
        "new_rate": pytest.approx(p1),
        "base_rate": pytest.approx(p0),
        "limit_rate": pytest.approx(limit),
        "z": pytest.approx(z, rel=1e-12),
        "p_value": pytest.approx(1 - NormalDist().cdf(z), rel=1e-9),
        "min_responses": MIN,
        "tolerance": 0.10,
        "alpha": 0.05,
        "p_good": pytest.approx(NormalDist().cdf(z), rel=1e-12),
        "new_sampled": 100,
        "base_sampled": 100,
        "new_effective_n": pytest.approx(n_eff),
        "base_effective_n": pytest.approx(n_eff),
        "sample_weight": 10.0,  # (1100 - 100 unsampled) / 100 sampled
        "version": None,
        "baseline_version": None,
    }
    assert asdict(result) == expected


def test_watchdog_assess__rate_at_the_limit_is_higher_than_the_observed__the_limits_variance() -> None:
    # 30 % of 100 before, 31 % of 1,000 after: p1 (1 - p1) is below the limit's 0.33 * 0.67, which the test uses.
    result = assess((310, 1000), (30, 100))
    limit = 0.33
    z = (0.31 - limit) / math.sqrt(limit * (1 - limit) / 1000 + 1.1**2 * 0.3 * 0.7 / 100)
    assert result.z == pytest.approx(z, rel=1e-12)


def test_watchdog_assess__only_the_baseline_sampled__its_weight_shown() -> None:
    base = ErrorCounts(errors=12, responses=200, weighted_errors=30.0, weight=1100.0, weight_sq=10100.0, sampled=100)
    assert assess((10, 100), base).sample_weight == 10.0
    assert assess((10, 100), (10, 100)).sample_weight is None


def test_watchdog_assess__p_value_exactly_alpha__not_rolled_back() -> None:
    p = assess((45, 100), (30, 100)).p_value
    assert p is not None and 0 < p < 0.05
    assert assess((45, 100), (30, 100), alpha=p).verdict == "ok"
    assert assess((45, 100), (30, 100), alpha=p * 1.000001).verdict == "rollback"


def test_watchdog_assess__p_good_exactly_alpha__not_judged_good() -> None:
    p = assess((294, 1000), (300, 1000)).p_good
    assert p is not None and 0 < p < 0.05
    assert assess((294, 1000), (300, 1000), alpha=p).verdict == "ok"
    assert assess((294, 1000), (300, 1000), alpha=p * 1.000001).verdict == "good"


# --- Degenerate rates: no sampling noise left to weigh the difference against ------------------------------------


def test_watchdog_assess__no_errors_then_all_errors__rolled_back() -> None:
    result = assess((60, 60), (0, 100))
    assert result.verdict == "rollback"
    assert (result.z, result.p_value, result.p_good) == (math.inf, 0.0, 1.0)


def test_watchdog_assess__no_errors_before_or_after__ok_with_z_zero() -> None:
    result = assess((0, 60), (0, 100))
    assert result.verdict == "ok"
    assert (result.z, result.p_value, result.p_good) == (0.0, 0.5, 0.5)
    # Even at an alpha above one half, no difference is neither a rise nor a fall.
    assert assess((0, 60), (0, 100), alpha=0.6).verdict == "ok"


def test_watchdog_assess__all_errors_before_and_after__good_not_worse() -> None:
    result = assess((60, 60), (100, 100))
    assert result.verdict == "good"
    assert (result.z, result.p_value, result.p_good) == (-math.inf, 1.0, 0.0)


def test_watchdog_assess__all_errors_then_none__good() -> None:
    result = assess((0, 60), (100, 100))
    assert (result.verdict, result.z) == ("good", -math.inf)


def test_watchdog_assess__no_errors_after_a_few_before__good() -> None:
    # The new side's variance is taken at the limit, so no errors among 60 is not certainty.
    result = assess((0, 60), (30, 100))
    assert result.verdict == "good" and math.isfinite(result.z) and result.z < 0


# --- The watch window ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_watches_ensure__made_live_exactly_the_watch_days_ago__watched_a_second_more__not() -> None:
    days = int(rule("WATCHDOG_WATCH_DAYS"))
    agent = _agent_with_baseline()
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=NOW - timedelta(days=days, seconds=1))
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=NOW - timedelta(days=days))

    assert watches_ensure(now=NOW, agent=agent) == 1
    assert watches_ensure(now=NOW, agent=agent) == 0

    (watch,) = VersionWatch.objects.filter(agent=agent)
    assert watch.version.number == 3 and watch.watch_until == NOW


@pytest.mark.django_db
def test_watches_ensure__made_live_after_now__not_yet_watched() -> None:
    agent = _agent_with_baseline()
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=NOW + timedelta(seconds=1))
    assert watches_ensure(now=NOW, agent=agent) == 0
    assert watches_ensure(now=NOW + timedelta(seconds=1), agent=agent) == 1


@pytest.mark.django_db
def test_watchdog_pass__back_to_back_then_a_bad_week__one_rollback_for_both_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = _agent_with_baseline(errors=10)
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT + timedelta(minutes=1))
    log_responded(agent, prefix="bad", n=100, errors=60, start=CHANGED_AT + timedelta(hours=1))

    with caplog.at_level(logging.INFO, logger="approvals.watchdog"):
        results = watchdog_pass(now=NOW, agent=agent)

    assert [(w.watch.version.number, w.outcome, w.assessment.verdict) for w in results] == [
        (2, "rolled_back", "rollback")
    ]
    assessed = [r for r in caplog.records if r.getMessage() == "watchdog.assessed"]
    assert [(r.agent_id, r.version, r.verdict) for r in assessed] == [(agent.agent_id, 2, "rollback")]  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_watchdog_pass__still_watching__outcome_watching() -> None:
    agent = _agent_with_baseline(errors=30)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="new", n=60, errors=21, start=CHANGED_AT + timedelta(hours=1))

    (watched,) = watchdog_pass(now=NOW, agent=agent)

    assert (watched.outcome, watched.assessment.verdict, watched.rollback) == ("watching", "ok", None)
    watch = VersionWatch.objects.get(agent=agent)
    assert watched.watch == watch
    assert (watch.state, watch.assessed_at, watch.assessment["verdict"]) == ("watching", NOW, "ok")
    assert watch.baseline is not None and watch.baseline.number == 1


@pytest.mark.django_db
def test_restore_target__two_good_versions_after_the_baseline__the_latest() -> None:
    agent = _agent_with_baseline()
    for number, (name, value) in enumerate([("flag_threshold", 0.7), ("escalate_threshold", 0.88)], start=2):
        _accept(agent, threshold=name, proposed=value, at=CHANGED_AT + timedelta(minutes=number))
    _accept(agent, threshold="flag_threshold", proposed=0.65, at=CHANGED_AT + timedelta(minutes=9))
    watches_ensure(now=NOW, agent=agent)
    VersionWatch.objects.filter(agent=agent, version__number__in=[2, 3]).update(state="good")
    versions = {v.number: v for v in ConfigVersion.objects.filter(agent=agent)}

    assert _restore_target(version=versions[4], baseline=versions[1]) == versions[3]
    assert _restore_target(version=versions[3], baseline=versions[1]) == versions[2]
    assert _restore_target(version=versions[2], baseline=versions[1]) == versions[1]


@pytest.mark.django_db
def test_restore_target__no_baseline__the_latest_earlier_version_not_rolled_back() -> None:
    agent = _agent_with_baseline()
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT + timedelta(minutes=1))
    _accept(agent, threshold="flag_threshold", proposed=0.65, at=CHANGED_AT + timedelta(minutes=2))
    watches_ensure(now=NOW, agent=agent)
    versions = {v.number: v for v in ConfigVersion.objects.filter(agent=agent)}

    assert _restore_target(version=versions[4], baseline=None) == versions[3]
    VersionWatch.objects.filter(agent=agent, version__number=3).update(state="rolled_back")
    assert _restore_target(version=versions[4], baseline=None) == versions[2]


@pytest.mark.parametrize(
    "base",
    [
        (10, 100),
        ErrorCounts(errors=1, responses=10, weighted_errors=0.0, weight=0.0, weight_sq=0.0),  # weighs nothing
    ],
)
def test_watchdog_assess__a_side_with_no_weight__no_baseline(base: Any) -> None:
    if isinstance(base, ErrorCounts):
        assert assess((30, 60), base).verdict == "no_baseline"
    else:
        assert assess((0, 0), base, min_responses=0).verdict == "no_baseline"


def two_agents_with_a_change(*, errors: tuple[int, int] = (40, 40)) -> list[Any]:
    """Two agents, each with 100 responses (10 % errors) before a change and 60 after it, ``errors`` of them
    errors."""
    agents = []
    for agent_id, after in zip(("triage", "other"), errors, strict=True):
        agent, _ = make_agent(agent_id, now=NOW - timedelta(days=21))
        log_responded(agent, prefix=f"{agent_id}-base", n=100, errors=10, start=CHANGED_AT - timedelta(days=10))
        _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
        log_responded(agent, prefix=f"{agent_id}-new", n=60, errors=after, start=CHANGED_AT + timedelta(hours=1))
        agents.append(agent)
    return agents


@pytest.mark.django_db
def test_watchdog_pass__one_agent__only_its_watches() -> None:
    triage, other = two_agents_with_a_change(errors=(7, 0))  # triage: within the noise; other: clearly better
    watches_ensure(now=NOW)

    results = watchdog_pass(now=NOW, agent=triage)

    assert [(w.watch.agent_id, w.outcome) for w in results] == [(triage.pk, "watching")]
    assert VersionWatch.objects.get(agent=other).state == "watching"


@pytest.mark.django_db
def test_watches_ensure__one_agent__only_its_versions() -> None:
    triage, other = two_agents_with_a_change()
    assert watches_ensure(now=NOW, agent=triage) == 1
    assert not VersionWatch.objects.filter(agent=other).exists()


@pytest.mark.django_db
def test_watches_ensure__another_pass_makes_the_row_meanwhile__no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import approvals.watchdog as watchdog

    agent = _agent_with_baseline()
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    real = watchdog._unwatched_versions

    class Racing:
        """Another pass commits the watch rows between this one's read and its insert."""

        def __init__(self, statement: Any) -> None:
            self.statement = statement

        def rows(self, **values: Any) -> list[Any]:
            found = self.statement.rows(**values)
            VersionWatch.objects.bulk_create(
                [
                    VersionWatch(agent_id=agent_pk, version_id=pk, watch_until=activated_at)
                    for pk, agent_pk, activated_at in found
                ]
            )
            return found

    monkeypatch.setattr(watchdog, "_unwatched_versions", lambda one_agent: Racing(real(one_agent)))

    watches_ensure(now=NOW, agent=agent)

    assert VersionWatch.objects.filter(agent=agent).count() == 1


@pytest.mark.django_db
def test_watchdog_pass__judged_good__not_assessed_again() -> None:
    agent = _agent_with_baseline(errors=30)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="new", n=100, errors=10, start=CHANGED_AT + timedelta(hours=1))
    assert [w.outcome for w in watchdog_pass(now=NOW, agent=agent)] == ["good"]
    log_responded(agent, prefix="later", n=100, errors=90, start=CHANGED_AT + timedelta(days=1))

    assert watchdog_pass(now=NOW + timedelta(hours=1), agent=agent) == []
    assert VersionWatch.objects.get(agent=agent).assessed_at == NOW


@pytest.mark.django_db
def test_watchdog_pass__two_watched__each_keeps_its_own_assessment() -> None:
    agent = _agent_with_baseline(errors=30)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    _accept(agent, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT + timedelta(days=1))

    watchdog_pass(now=NOW, agent=agent)

    stored = {w.version.number: w.assessment["version"] for w in VersionWatch.objects.filter(agent=agent)}
    assert stored == {2: 2, 3: 3}


@pytest.mark.django_db
def test_watchdog_pass__judged_by_hand_while_assessed__the_judgement_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    import approvals.watchdog as watchdog

    agent = _agent_with_baseline(errors=30)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    real = watchdog.watch_assess

    def judged_meanwhile(*, watch: Any, now: Any) -> Any:
        VersionWatch.objects.filter(pk=watch.pk).update(state="good", assessment={"by": "hand"})
        return real(watch=watch, now=now)

    monkeypatch.setattr(watchdog, "watch_assess", judged_meanwhile)
    watchdog_pass(now=NOW, agent=agent)

    watch = VersionWatch.objects.get(agent=agent)
    assert (watch.state, watch.assessment) == ("good", {"by": "hand"})


@pytest.mark.django_db
def test_watchdog_pass__rollback_done_elsewhere_first__still_watching(monkeypatch: pytest.MonkeyPatch) -> None:
    import approvals.watchdog as watchdog

    agent = _agent_with_baseline(errors=10)
    _accept(agent, threshold="flag_threshold", proposed=0.7, at=CHANGED_AT)
    log_responded(agent, prefix="bad", n=60, errors=40, start=CHANGED_AT + timedelta(hours=1))
    monkeypatch.setattr(watchdog, "_rollback", lambda **kw: None)

    (watched,) = watchdog_pass(now=NOW, agent=agent)

    assert (watched.outcome, watched.assessment.verdict, watched.rollback) == ("watching", "rollback", None)
    assert watched.watch == VersionWatch.objects.get(agent=agent)


@pytest.mark.django_db
def test_restore_target__a_good_version_before_the_baseline__the_baseline() -> None:
    agent = _agent_with_baseline()
    for minutes, (name, value) in enumerate([("flag_threshold", 0.7), ("escalate_threshold", 0.88)]):
        _accept(agent, threshold=name, proposed=value, at=CHANGED_AT + timedelta(minutes=minutes))
    _accept(agent, threshold="flag_threshold", proposed=0.65, at=CHANGED_AT + timedelta(minutes=9))
    watches_ensure(now=NOW, agent=agent)
    VersionWatch.objects.filter(agent=agent, version__number=2).update(state="good")
    versions = {v.number: v for v in ConfigVersion.objects.filter(agent=agent)}

    assert _restore_target(version=versions[4], baseline=versions[3]) == versions[3]


@pytest.mark.django_db
def test_restore_target__another_agents_good_version__never() -> None:
    triage, other = two_agents_with_a_change()
    _accept(other, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT + timedelta(minutes=5))
    _accept(triage, threshold="escalate_threshold", proposed=0.88, at=CHANGED_AT + timedelta(minutes=5))
    _accept(triage, threshold="flag_threshold", proposed=0.65, at=CHANGED_AT + timedelta(minutes=9))
    watches_ensure(now=NOW)
    VersionWatch.objects.filter(agent=other).update(state="good")
    mine = {v.number: v for v in ConfigVersion.objects.filter(agent=triage)}

    assert _restore_target(version=mine[4], baseline=mine[1]) == mine[1]
    assert _restore_target(version=mine[4], baseline=None) == mine[3]
