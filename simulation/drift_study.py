"""Canary against before/after when the world drifts: a Monte Carlo of both judges, without the database.

The before/after watchdog compares reviewers' error rate after a change with the weeks before it, so anything
else that moves the rate in the week of the change (a new pattern of traffic, a season, a new reviewer) is
blamed on the change or credited to it. A canary runs the change on a share of sessions and compares them with
the other sessions over the same days, so such a move lands on both arms. This study measures what that is
worth: each simulated change is made in a week when the world's error rate also moves, and both judges decide it.

    .venv/bin/python manage.py simulate --scenario drift-study [--changes 200] [--per-day 2000] [--seed 1]

Each change is good (the error rate unchanged or a little lower) or bad (materially higher), alternately. At the
change the world's own rate moves by a relative drift drawn uniformly from ``DriftWorld.drift``, independently
of the change, and stays there. Decisions come at ``per_day`` a day in sessions of a few decisions each; the
fired share is all queued, a sample of the weakest-action rest is queued and weighs 1 / sample rate, and the
queued ones are answered one to two days later (``benchmarks/watchdog_study.py``'s reviewers, whose ``World``
and ``Side`` live here). Sessions get random ids and the real ``rollouts.arms.in_canary`` puts them in an arm.

Every change is judged both ways on the same draws (a decision's error is one uniform draw against the rate its
arm had, so the two judges see the same luck): before/after calls the real ``watchdog_assess`` hourly on the
responses since the change against the baseline weeks before it, for WATCHDOG_WATCH_DAYS; the canary calls the
real ``rollouts.judge.canary_assess`` hourly on the canary arm against the control arm, for CANARY_DAYS. Each
stops at its first rollback or good verdict; a change undecided when its time runs out is inconclusive.

Django's settings must be set up before a study runs (the judges read the rules); importing this module needs
neither, so the benchmark can import ``World`` and ``Side`` before it sets them up.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from rollouts.arms import in_canary

if TYPE_CHECKING:
    from approvals.selectors import ErrorCounts
    from approvals.watchdog import Assessment

SESSION_HOURS = 1.0  # a session's decisions are made within an hour of its start


@dataclass(frozen=True)
class World:
    """The decisions and the reviewers: how many a day, which are queued, how many are answered, and when."""

    per_day: float
    fired_share: float
    sample_rate: float
    response_rate: float
    delay_hours: tuple[float, float] = (24.0, 48.0)
    weighted: bool = True  # False: every response weighs 1, as the watchdog did before (for comparison)


@dataclass
class Side:
    """One side's responses, sorted by arrival, as running sums."""

    arrival: NDArray[np.float64]
    n: NDArray[np.int64]
    errors: NDArray[np.int64]
    weight: NDArray[np.float64]
    weighted_errors: NDArray[np.float64]
    weight_sq: NDArray[np.float64]
    sampled: NDArray[np.int64]

    def counts(self, at: float, weighted: bool = True) -> "ErrorCounts":
        """What the judge sees at hour ``at``: the responses arrived by then."""
        from approvals.selectors import ErrorCounts

        i = int(np.searchsorted(self.arrival, at, side="right"))
        if i == 0:
            return ErrorCounts(errors=0, responses=0, weighted_errors=0.0, weight=0.0, weight_sq=0.0)
        k = i - 1
        if not weighted:
            return ErrorCounts(errors=int(self.errors[k]), responses=int(self.n[k]))
        return ErrorCounts(
            errors=int(self.errors[k]),
            responses=int(self.n[k]),
            weighted_errors=float(self.weighted_errors[k]),
            weight=float(self.weight[k]),
            weight_sq=float(self.weight_sq[k]),
            sampled=int(self.sampled[k]),
        )


def side_of(
    arrival: NDArray[np.float64], sampled: NDArray[np.bool_], error: NDArray[np.bool_], *, sample_rate: float
) -> Side:
    """Responses in any order as running sums by arrival, so each hourly look is one binary search."""
    order = np.argsort(arrival)
    arrival, sampled, error = arrival[order], sampled[order], error[order]
    w = np.where(sampled, 1.0 / sample_rate, 1.0)
    return Side(
        arrival=arrival,
        n=np.arange(1, len(arrival) + 1),
        errors=np.cumsum(error),
        weight=np.cumsum(w),
        weighted_errors=np.cumsum(w * error),
        weight_sq=np.cumsum(w * w),
        sampled=np.cumsum(sampled),
    )


# --- The drifting world -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftWorld:
    """What the study assumes. ``drift`` and the effects are relative: +0.3 is 30 % more errors."""

    world: World
    share: float  # of sessions in the canary arm
    canary_days: int
    watch_days: int  # the before/after watch after the change
    baseline_days: int  # the before/after baseline before it
    base_rate: float = 0.10
    drift: tuple[float, float] = (-0.40, 0.40)
    good_effect: tuple[float, float] = (-0.10, 0.0)
    bad_effect: tuple[float, float] = (0.30, 0.60)
    session_decisions: float = 4.0  # the mean; every session has at least one

    @classmethod
    def from_rules(cls, *, per_day: float = 2000, **overrides: Any) -> "DriftWorld":
        """The settings' canary share and days, watch window and baseline weeks, and the benchmark's reviewers."""
        from loopsite.rules import rule

        world = World(per_day=per_day, fired_share=0.20, sample_rate=0.10, response_rate=0.85)
        made = cls(
            world=world,
            share=float(rule("CANARY_SHARE")),
            canary_days=int(rule("CANARY_DAYS")),
            watch_days=int(rule("WATCHDOG_WATCH_DAYS")),
            baseline_days=int(rule("WATCHDOG_BASELINE_WEEKS")) * 7,
        )
        return replace(made, **overrides)

    def describe(self) -> str:
        """The assumptions in one sentence, printed with the table."""
        w = self.world
        responses = w.per_day * (w.fired_share + (1 - w.fired_share) * w.sample_rate) * w.response_rate
        return (
            f"Base error rate {self.base_rate:.0%}; at each change the world's rate moves by {_span(self.drift)} "
            f"relative, independently of it; a good change moves it {_span(self.good_effect)}, a bad one "
            f"{_span(self.bad_effect)}. {w.per_day:g} decisions a day in sessions of about "
            f"{self.session_decisions:g}, {w.fired_share:.0%} fired, {w.sample_rate:.0%} of the rest sampled, "
            f"{w.response_rate:.0%} answered 1-2 days later (about {responses:.0f} responses a day). Before/after: "
            f"{self.baseline_days} days before against up to {self.watch_days} after; canary: "
            f"{self.share:.0%} of sessions against the rest for up to {self.canary_days} days."
        )


def _span(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"{low:+.0%} to {high:+.0%}"


@dataclass(frozen=True)
class Change:
    """One simulated change: whether it is good, and what it and the world did to the error rate."""

    number: int
    good: bool
    drift: float
    effect: float


@dataclass(frozen=True)
class Judged:
    """One judge's verdict on one change: good, rollback or inconclusive, and the hours from the change."""

    change: Change
    verdict: str
    hours: float | None

    @property
    def wrong(self) -> bool:
        """A good change rolled back, or a bad one let through."""
        return self.verdict == ("rollback" if self.change.good else "good")


@dataclass(frozen=True)
class MethodSummary:
    method: str
    changes: int
    good_changes: int
    bad_changes: int
    good_rolled_back: int
    bad_passed: int
    inconclusive: int
    median_hours: float | None
    p90_hours: float | None
    right_median_hours: float | None  # among the right verdicts only
    bad_stopped_median_hours: float | None  # the bad changes rolled back or aborted: how soon
    bad_exposure_days: float  # mean over bad changes: days of every session's traffic on the bad value

    @property
    def wrong(self) -> int:
        return self.good_rolled_back + self.bad_passed


BEFORE_AFTER = "before/after"
CANARY = "canary"


@dataclass
class DriftResult:
    world: DriftWorld
    seed: int
    judged: dict[str, list[Judged]] = field(default_factory=dict)

    def exposure_days(self, method: str, judged: Judged) -> float:
        """How much traffic a bad change decided, in days of all sessions, over the before/after watch window:
        before/after puts every session on it until the rollback; a canary puts its share on it until the abort,
        and every session from a promotion on. An undecided change keeps its exposure to the window's end."""
        horizon = self.world.watch_days * 24.0
        hours = judged.hours if judged.hours is not None else horizon
        if method == BEFORE_AFTER:
            on = hours if judged.verdict == "rollback" else horizon
        elif judged.verdict == "good":
            on = self.world.share * hours + (horizon - hours)
        else:
            on = self.world.share * (hours if judged.verdict == "rollback" else horizon)
        return on / 24.0

    def summary(self, method: str) -> MethodSummary:
        rows = self.judged[method]
        hours = np.array([j.hours for j in rows if j.hours is not None], dtype=float)
        right = [j.hours for j in rows if j.hours is not None and not j.wrong]
        bad = [j for j in rows if not j.change.good]
        stopped = [j.hours for j in bad if j.verdict == "rollback" and j.hours is not None]
        return MethodSummary(
            method=method,
            changes=len(rows),
            good_changes=sum(j.change.good for j in rows),
            bad_changes=sum(not j.change.good for j in rows),
            good_rolled_back=sum(j.wrong and j.change.good for j in rows),
            bad_passed=sum(j.wrong and not j.change.good for j in rows),
            inconclusive=sum(j.verdict == "inconclusive" for j in rows),
            median_hours=float(np.median(hours)) if len(hours) else None,
            p90_hours=float(np.percentile(hours, 90)) if len(hours) else None,
            right_median_hours=float(np.median(right)) if right else None,
            bad_stopped_median_hours=float(np.median(stopped)) if stopped else None,
            bad_exposure_days=float(np.mean([self.exposure_days(method, j) for j in bad])) if bad else 0.0,
        )


# --- One change ---------------------------------------------------------------------------------------------


@dataclass
class Responses:
    """The answered decisions of a stretch of time: when each answer arrives, whether it was sampled, its arm,
    and the uniform draw that makes it an error when below the rate its arm had."""

    arrival: NDArray[np.float64]
    sampled: NDArray[np.bool_]
    luck: NDArray[np.float64]
    canary: NDArray[np.bool_]

    def side(self, rate: float, world: World, where: NDArray[np.bool_] | None = None) -> Side:
        keep = np.ones(len(self.arrival), dtype=bool) if where is None else where
        return side_of(self.arrival[keep], self.sampled[keep], self.luck[keep] < rate, sample_rate=world.sample_rate)


def _answered(
    rng: np.random.Generator, world: World, made: NDArray[np.float64], canary: NDArray[np.bool_]
) -> Responses:
    """Which decisions are queued and answered, and when the answers arrive."""
    n = len(made)
    fired = rng.random(n) < world.fired_share
    sampled = ~fired & (rng.random(n) < world.sample_rate)
    answered = (fired | sampled) & (rng.random(n) < world.response_rate)
    arrival = made[answered] + rng.uniform(*world.delay_hours, size=int(answered.sum()))
    return Responses(arrival, sampled[answered], rng.random(len(arrival)), canary[answered])


def draw_sessions(
    rng: np.random.Generator, drift: DriftWorld, *, hours: float, version: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Decisions made in [0, hours) in sessions with random ids, and whether each one's session is in the canary
    arm, as the real hash of the id and the canary's version puts it."""
    mean = drift.session_decisions
    count = int(rng.poisson(drift.world.per_day * hours / 24.0 / mean))
    start = rng.random(count) * hours
    size = 1 + rng.poisson(mean - 1.0, size=count)
    ids = rng.integers(0, 2**63, size=count)
    arm = np.fromiter(
        (in_canary(f"{i:016x}", share=drift.share, version=version) for i in ids.tolist()), dtype=bool, count=count
    )
    made = np.repeat(start, size) + rng.random(int(size.sum())) * SESSION_HOURS
    return made, np.repeat(arm, size)


def change_draw(rng: np.random.Generator, drift: DriftWorld, number: int) -> Change:
    """Even numbers are good changes, odd ones bad: half and half, whatever the count."""
    good = number % 2 == 0
    return Change(
        number=number,
        good=good,
        drift=float(rng.uniform(*drift.drift)),
        effect=float(rng.uniform(*(drift.good_effect if good else drift.bad_effect))),
    )


Assess = Callable[["ErrorCounts", "ErrorCounts"], "Assessment"]


def first_verdict(*, new: Side, base: Side, hours: int, assess: Assess, weighted: bool) -> tuple[str, float | None]:
    """The hourly passes: the first rollback or good verdict and its hour, else inconclusive."""
    for hour in range(1, hours + 1):
        verdict = assess(new.counts(hour, weighted), base.counts(hour, weighted)).verdict
        if verdict in ("rollback", "good"):
            return verdict, float(hour)
    return "inconclusive", None


def _judges() -> dict[str, Assess]:
    """The two real judges: the watchdog with the settings' rules, and the canary's own verdict."""
    from approvals.watchdog import watchdog_assess
    from loopsite.rules import rule
    from rollouts.judge import canary_assess

    min_responses, tolerance, alpha = (
        int(rule("WATCHDOG_MIN_RESPONSES")),
        float(rule("WATCHDOG_TOLERANCE")),
        float(rule("WATCHDOG_ALPHA")),
    )

    def before_after(new: "ErrorCounts", base: "ErrorCounts") -> "Assessment":
        return watchdog_assess(new=new, base=base, min_responses=min_responses, tolerance=tolerance, alpha=alpha)

    return {BEFORE_AFTER: before_after, CANARY: lambda new, base: canary_assess(canary=new, control=base)}


def one_change(
    rng: np.random.Generator, drift: DriftWorld, number: int, judges: dict[str, Assess]
) -> dict[str, Judged]:
    """Draw one change's weeks and judge it both ways on the same decisions."""
    world = drift.world
    change = change_draw(rng, drift, number)
    before_hours = drift.baseline_days * 24
    n_before = int(rng.poisson(world.per_day * drift.baseline_days))
    made_before = -before_hours + rng.random(n_before) * before_hours
    before = _answered(rng, world, made_before, np.zeros(n_before, dtype=bool))
    after_hours = max(drift.watch_days, drift.canary_days) * 24
    made_after, arm = draw_sessions(rng, drift, hours=after_hours, version=number + 2)
    after = _answered(rng, world, made_after, arm)

    moved = drift.base_rate * (1.0 + change.drift)  # the world's rate from the change on, without it
    changed = min(1.0, moved * (1.0 + change.effect))  # with it
    base = before.side(drift.base_rate, world)
    verdict, hours = first_verdict(
        new=after.side(changed, world),
        base=base,
        hours=drift.watch_days * 24,
        assess=judges[BEFORE_AFTER],
        weighted=world.weighted,
    )
    canary_verdict, canary_hours = first_verdict(
        new=after.side(changed, world, after.canary),
        base=after.side(moved, world, ~after.canary),
        hours=drift.canary_days * 24,
        assess=judges[CANARY],
        weighted=world.weighted,
    )
    return {
        BEFORE_AFTER: Judged(change, verdict, hours),
        CANARY: Judged(change, canary_verdict, canary_hours),
    }


def drift_study(
    *, changes: int, seed: int, drift: DriftWorld | None = None, progress: Callable[[int], None] | None = None
) -> DriftResult:
    """``changes`` changes, each on its own generator (seed, number): a change's draws do not depend on how many
    others are run, so a short run is the start of a long one."""
    if changes < 2:
        raise ValueError("a drift study needs at least 2 changes, one good and one bad")
    drift = drift or DriftWorld.from_rules()
    judges = _judges()
    result = DriftResult(world=drift, seed=seed, judged={BEFORE_AFTER: [], CANARY: []})
    for number in range(changes):
        for method, judged in one_change(np.random.default_rng([seed, number]), drift, number, judges).items():
            result.judged[method].append(judged)
        if progress is not None:
            progress(number + 1)
    return result


# --- The table ----------------------------------------------------------------------------------------------


def _h(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} h"


def _of(count: int, total: int) -> str:
    return f"{count} of {total} ({count / total:.0%})" if total else "0"


def drift_table(result: DriftResult) -> str:
    """The study in plain words first, then per method: wrong verdicts, inconclusive, and time to a verdict."""
    ba, canary = result.summary(BEFORE_AFTER), result.summary(CANARY)
    lead = (
        f"Of {ba.changes} changes made in a week the world drifted, before/after got {ba.wrong} wrong, the canary "
        f"{canary.wrong}; the canary decided in a median {_h(canary.median_hours)} against "
        f"{_h(ba.median_hours)}."
    )
    names = {
        BEFORE_AFTER: (f"before/after ({result.world.watch_days} d watch)", "rolled back", "judged good"),
        CANARY: (
            f"canary ({result.world.share:.0%} of sessions, {result.world.canary_days} d)",
            "aborted",
            "promoted",
        ),
    }
    harm = (
        f"A bad change decided {canary.bad_exposure_days:.1f} days of all traffic under the canary against "
        f"{ba.bad_exposure_days:.1f} under before/after ({canary.bad_exposure_days / ba.bad_exposure_days:.0%}); "
        f"the bad changes it stopped, it stopped in a median {_h(canary.bad_stopped_median_hours)} against "
        f"{_h(ba.bad_stopped_median_hours)}."
        if ba.bad_exposure_days
        else ""
    )
    lines = [
        lead + (" " + harm if harm else ""),
        "",
        result.world.describe() + f" Seed {result.seed}.",
        "",
        "| method | changes | wrong verdicts | good change rolled back / aborted | bad change judged good / promoted "
        "| inconclusive | hours to a verdict: median | p90 | to a right verdict: median | bad change stopped: median "
        "| traffic on a bad change (days) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in (ba, canary):
        name, back, passed = names[s.method]
        lines.append(
            f"| {name} | {s.changes} | {_of(s.wrong, s.changes)} | {_of(s.good_rolled_back, s.good_changes)} "
            f"{back} | {_of(s.bad_passed, s.bad_changes)} {passed} | {_of(s.inconclusive, s.changes)} "
            f"| {_h(s.median_hours)} | {_h(s.p90_hours)} | {_h(s.right_median_hours)} "
            f"| {_h(s.bad_stopped_median_hours)} | {s.bad_exposure_days:.1f} |"
        )
    return "\n".join(lines)
