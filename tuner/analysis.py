"""The tuner's statistics, apart from the ORM: replay, bootstrap, noise floors, the miss budget, clustering,
trends and the contract's rules.

Everything here takes plain arrays or dataclasses and returns dataclasses, so it can be tested on crafted data
whose right answer is known. Selectors load the data; services store the results.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import isotonic_regression
from scipy.stats import beta, binom

try:
    # The function ``beta.ppf`` evaluates once it has checked its arguments: the same numbers, without the checks'
    # cost, which the bootstrap pays hundreds of times a cycle. Every call here passes a quantile in (0, 1) and
    # shapes above 0, where the two agree bit for bit (tests/tuner/test_one_pass.py holds them to it).
    from scipy.special._ufuncs import _beta_ppf as beta_ppf  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - another scipy: the public function

    def beta_ppf(q: Any, a: Any, b: Any) -> Any:
        return beta.ppf(q, a, b)


BINS = 1000  # confidence resolution of the replay: 0.001
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20260302
CONFIDENCE_ORDER = {"low": 0, "medium": 1, "high": 2}
# The noise floor of a population is read from this lowest share of its responses (by confidence).
NOISE_FLOOR_SHARE = 0.5
# At the gated action the floor is the lower end of its 80 % one-sided interval (a cautious, not a blind, read).
LOWER_FLOOR_QUANTILE = 0.20
EPS = 1e-9


# --------------------------------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class ReplayData:
    """Weighted confidence histograms of one threshold's two populations.

    Row ``k`` of ``negatives`` / ``positives`` holds the per-bin counts of decisions that carry weight
    ``weights[k]`` (1 for queued-by-firing decisions, 1 / sample rate for sampled weakest-action ones) and belong
    to the population ``gated[k]``: True for decisions taken at the gated action, False for those one action
    below. A *negative* is a decision that should not take the gated action (a dismissal at that action, or an
    approved / dismissed decision just below it); a *positive* is one that should (an approved or escalated
    decision at that action: a *confirmed* case; or an escalated one just below it). Under a threshold value
    ``v`` a decision in bin ``b`` takes the gated action when ``b >= v * BINS``.
    """

    negatives: NDArray[np.float64]  # shape (K, BINS + 1)
    positives: NDArray[np.float64]
    weights: NDArray[np.float64]  # shape (K,)
    gated: NDArray[np.bool_]  # shape (K,)

    @classmethod
    def empty(cls, weights: Sequence[float] = (1.0,), gated: Sequence[bool] | None = None) -> "ReplayData":
        k = len(weights)
        flags = np.asarray(gated if gated is not None else [True] * k, dtype=bool)
        return cls(np.zeros((k, BINS + 1)), np.zeros((k, BINS + 1)), np.asarray(weights, dtype=float), flags)

    @classmethod
    def from_confidences(
        cls,
        negatives: Sequence[float],
        positives: Sequence[float],
        *,
        sampled_negatives: Sequence[float] = (),
        sampled_positives: Sequence[float] = (),
        sample_rate: float = 1.0,
        current: float | None = None,
    ) -> "ReplayData":
        """Build from raw confidences (tests and small data). Rows: decisions at the gated action (weight 1),
        queued decisions one action below (weight 1) and sampled ones (weight 1 / ``sample_rate``). An unsampled
        confidence at or above ``current`` was taken at the gated action, one below it one action below; without
        ``current`` every unsampled one was taken at the gated action."""
        data = cls.empty((1.0, 1.0, 1.0 / sample_rate), gated=(True, False, False))

        def row(c: float) -> int:
            return 0 if current is None or c >= current else 1

        for c in negatives:
            data.negatives[row(c), bin_of(c)] += 1
        for c in positives:
            data.positives[row(c), bin_of(c)] += 1
        for c in sampled_negatives:
            data.negatives[2, bin_of(c)] += 1
        for c in sampled_positives:
            data.positives[2, bin_of(c)] += 1
        return data

    @property
    def positives_total(self) -> float:
        return float(self.weights @ self.positives.sum(axis=1))

    @property
    def negatives_total(self) -> float:
        return float(self.weights @ self.negatives.sum(axis=1))


def bin_of(confidence: float) -> int:
    return min(BINS, max(0, int(math.floor(confidence * BINS + 1e-9))))


def grid_index(value: float) -> int:
    """The first bin that takes the action under threshold ``value`` (values are replayed on a 0.001 grid)."""
    return min(BINS + 1, max(0, int(math.ceil(value * BINS - 1e-9))))


def replay_curves(
    negatives: NDArray[np.float64], positives: NDArray[np.float64], weights: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """False alarms and raw misses for every grid index 0..BINS+1: ``fa[k]`` = weighted negatives in bins >= k,
    ``miss[k]`` = weighted positives in bins < k (every sampled escalation counted as a real miss). Histograms of
    shape (K, BINS + 1) give curves of shape (BINS + 2,); a stack of them (R, K, BINS + 1), one per resample, gives
    (R, BINS + 2)."""
    neg = weights @ negatives
    pos = weights @ positives
    edge = np.zeros((*neg.shape[:-1], 1))
    fa = np.concatenate([np.cumsum(neg[..., ::-1], axis=-1)[..., ::-1], edge], axis=-1)
    miss = np.concatenate([edge, np.cumsum(pos, axis=-1)], axis=-1)
    return fa, miss


@dataclass(frozen=True)
class Replay:
    false_alarms: float
    misses: float


def replay_at(data: ReplayData, value: float) -> Replay:
    """The raw replay at one value: weighted false alarms, and weighted positives below it."""
    fa, miss = replay_curves(data.negatives, data.positives, data.weights)
    k = grid_index(value)
    return Replay(float(fa[k]), float(miss[k]))


# ------------------------------------------------------------------------------------ noise and real misses


def rate_fit(
    positives: NDArray[np.float64], totals: NDArray[np.float64], *, cap: float, bound: str = "point"
) -> tuple[NDArray[np.float64], float]:
    """A population's positive rate modelled against confidence, and the flat floor that reviewers' slips leave
    in it where it holds no real cases. ``positives`` and ``totals`` are its counts per confidence bin.

    The rate is fitted with an isotonic (non-decreasing) regression. The floor is read from the population's
    lowest half of responses, or from less of it where the fitted rate rises above ``cap`` (5 %: more than slips)
    before the half: there the rate is taken as flat, one block of the regression, and that block's level (pooled
    with any higher bins that fall below it) is the floor. When the rate is above ``cap`` from the start the floor
    is unknown and taken as zero: every positive counts as real.

    ``bound`` says which side of the floor's uncertainty to take. "lower": the one-sided 80 % Clopper-Pearson lower
    bound of that block's rate, so a rise through a region whose few confirmed cases could be real as well as slips
    counts some of them (with many decisions the bound is close to the rate). "upper": the 95 % upper bound (never
    above
    ``cap``), and each block of the fit above it read at the 95 % lower bound of its own rate: a handful of sampled
    slips says little about the slip rate, and weighted by 1 / sample rate they must not pass for misses.

    Returns the fitted rate per bin (0 where the population has no decision) and the floor."""
    fitted_all = np.zeros(len(totals))
    idx = np.flatnonzero(totals > 0)
    if len(idx) == 0:
        return fitted_all, 0.0
    w = totals[idx]
    p = np.clip(positives[idx], 0.0, w)
    plain = isotonic_regression(p / w, weights=w, increasing=True).x
    half = min(int(np.searchsorted(np.cumsum(w) / w.sum(), NOISE_FLOOR_SHARE)), len(idx) - 1) + 1
    j = min(half, int(np.searchsorted(plain > cap + EPS, True)))
    fitted, floor = plain, 0.0
    if j > 0:
        rates = np.concatenate([[p[:j].sum() / w[:j].sum()], p[j:] / w[j:]])
        weights = np.concatenate([[w[:j].sum()], w[j:]])
        block = isotonic_regression(rates, weights=weights, increasing=True).x
        level = float(block[0])
        fitted = np.concatenate([np.full(j, level), block[1:]])
        # The block the floor was read from: the first one, and any bins pooled into it.
        pooled = int(np.searchsorted(fitted > level + 1e-12, True))
        x, n = p[:pooled].sum(), w[:pooled].sum()
        if bound == "upper":
            floor = float(min(cap, beta_ppf(0.95, x + 1, n - x))) if x < n else cap
        elif bound == "lower":
            floor = float(beta_ppf(LOWER_FLOOR_QUANTILE, x, n - x + 1)) if x > 0 else 0.0
        else:
            floor = max(0.0, level)
    if bound == "upper":
        fitted = _block_lower_bounds(fitted, p, w)
    fitted_all[idx] = fitted
    return fitted_all, floor


def _block_lower_bounds(fitted: NDArray[np.float64], p: NDArray[np.float64], w: NDArray[np.float64]) -> Any:
    """Each block of an isotonic fit (a run of equal values) at the one-sided 95 % Clopper-Pearson lower bound of
    its rate: one escalation among three decisions is no evidence of a 33 % miss rate."""
    starts = np.concatenate([[0], np.flatnonzero(np.abs(np.diff(fitted)) > 1e-12) + 1])
    x = np.add.reduceat(p, starts)
    n = np.add.reduceat(w, starts)
    low = np.zeros(len(starts))
    some = x > 0
    low[some] = beta_ppf(0.05, x[some], n[some] - x[some] + 1)
    return np.repeat(low, np.diff(np.concatenate([starts, [len(fitted)]])))


def noise_floor(
    positives: NDArray[np.float64], totals: NDArray[np.float64], *, cap: float, bound: str = "point"
) -> float:
    """The flat floor of ``rate_fit``."""
    return rate_fit(positives, totals, cap=cap, bound=bound)[1]


def real_cases(
    negatives: NDArray[np.float64],
    positives: NDArray[np.float64],
    weights: NDArray[np.float64],
    gated: NDArray[np.bool_],
    *,
    cap: float,
) -> tuple[NDArray[np.float64], tuple[float, float]]:
    """Per population (row 0: the gated action, row 1: one action below) and confidence bin, the real cases:
    the weighted decisions times their fitted positive rate in excess of the population's noise floor ``f``,
    divided by ``1 - 2f`` (a slip turns a real case into a non-case as often as the reverse). Where a population
    holds only slips the fit sits on the floor and counts nothing, so label noise cannot inflate the misses. Also
    returns the two floors. Each side is read cautiously: at the gated action, where a rise loses confirmed cases,
    the floor's lower bound (``rate_fit`` with ``bound="lower"``), so few confirmed cases are written off as slips
    on little evidence; one action below, where escalations are today's misses and each sampled one weighs
    1 / sample rate, ``bound="upper"``: only escalations the data cannot put down to slips count."""
    excess, floors = real_cases_stacked(negatives[None], positives[None], weights, gated, cap=cap)
    return excess[0], (float(floors[0, 0]), float(floors[0, 1]))


def real_cases_stacked(
    negatives: NDArray[np.float64],
    positives: NDArray[np.float64],
    weights: NDArray[np.float64],
    gated: NDArray[np.bool_],
    *,
    cap: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``real_cases`` for a stack of R histograms (R, K, BINS + 1), the bootstrap's resamples: the real cases
    (R, 2, BINS + 1) and the floors (R, 2). Only the fits go one resample at a time."""
    stack = negatives.shape[0]
    out = np.zeros((stack, 2, negatives.shape[-1]))
    floors = np.zeros((stack, 2))
    for row, population in enumerate((True, False)):
        rows = gated == population
        pos, neg = positives[:, rows], negatives[:, rows]
        total = weights[rows] @ (pos + neg)
        raw_pos = pos.sum(axis=1)
        raw_all = raw_pos + neg.sum(axis=1)
        bound = "lower" if population else "upper"
        for r in range(stack):
            fitted, f = rate_fit(raw_pos[r], raw_all[r], cap=cap, bound=bound)
            out[r, row] = total[r] * np.clip((fitted - f) / (1.0 - 2.0 * f), 0.0, 1.0)
            floors[r, row] = f
    return out, floors


def real_misses(excess: NDArray[np.float64], k: int) -> float:
    """The real misses below grid index ``k``: each population's excess below it, counted when positive (so one
    population's slips cannot cancel the other's real cases)."""
    return float(np.maximum(0.0, excess[:, :k].sum(axis=1)).sum())


@dataclass(frozen=True)
class Objective:
    """The objective and the miss rules' numbers (``loopsite.rules``)."""

    kind: str = "tolerance"  # or "cost"
    miss_tolerance: float = 0.10  # MISS_TOLERANCE
    miss_cost: float = 5.0
    miss_slack: float = 0.003  # MISS_BUDGET_SLACK
    miss_slack_cases: float = 1.0  # MISS_BUDGET_SLACK_CASES
    noise_floor_max: float = 0.05  # NOISE_FLOOR_MAX
    risk_share: float = 0.10  # RISK_MATERIAL_SHARE


@dataclass(frozen=True)
class Reference:
    """One threshold's misses in the agent's reference period (contract rule 10): real misses (noise-corrected)
    as a share of the real cases. ``provisional`` while no change has been accepted: the window stands in."""

    rate: float
    misses: float
    real: float
    label: str
    provisional: bool = False
    # The real misses the changes accepted since the reference were replayed to add, as a share of the real cases
    # of the window they were measured on: today's miss rate is taken as at least ``rate + spent``, so misses that
    # sampling hides from the window still count against the budget.
    spent: float = 0.0

    def allowed_rate(self, objective: Objective, real: float = math.inf) -> float:
        """Misses may exceed the reference by the tolerance (10 % of it) or by the absolute slack, whichever is
        larger: 0.3 % of the real cases, and never less than one real case of the window (``real`` of them). A
        reference of zero still leaves room for noise."""
        slack = max(objective.miss_slack, objective.miss_slack_cases / real if real > 0 else 0.0)
        return self.rate + max(objective.miss_tolerance * self.rate, slack)

    @property
    def committed_rate(self) -> float:
        return self.rate + self.spent


def miss_rule_checks(
    *,
    misses_today: Any,
    misses_new: Any,
    lost_share: Any,
    real: Any,
    objective: Objective,
    allowed_rate: float | None,
    committed_rate: float = 0.0,
) -> dict[str, Any]:
    """The limits on what an increase may give up, element-wise (numbers or arrays): True where it passes.

    - ``confirmed`` (objective ``tolerance``): the share of today's confirmed cases at the gated action that fall
      below the new value is at most the tolerance;
    - ``cycle`` (objective ``tolerance``): real misses rise by at most the tolerance of today's, or by the slack
      (0.3 % of the real cases, at least one case) when that is larger;
    - ``budget`` (every objective, when a reference is known): a move that adds misses leaves the miss rate at
      most the reference's allowed rate, today's rate taken as at least ``committed_rate`` (the reference plus
      what the changes accepted since were replayed to add)."""
    today = np.asarray(misses_today, dtype=float)
    new = np.asarray(misses_new, dtype=float)
    rc = np.asarray(real, dtype=float)
    added = new - today
    checks: dict[str, Any] = {}
    if objective.kind != "cost":
        checks["confirmed"] = np.asarray(lost_share, dtype=float) <= objective.miss_tolerance + EPS
        slack = np.maximum(objective.miss_slack * rc, objective.miss_slack_cases)
        checks["cycle"] = added <= np.maximum(objective.miss_tolerance * today, slack) + EPS
    if allowed_rate is not None:
        new_at_least = np.maximum(new, committed_rate * rc + added)
        checks["budget"] = (added <= EPS) | (new_at_least <= allowed_rate * rc + EPS)
    return checks


def risk_reasons(
    *,
    miss_change: float,
    miss_low: float,
    misses_today: float,
    remaining: float | None,
    material_share: float,
    least: float = 0.0,
) -> tuple[str, ...]:
    """Why an increase is flagged as a risk to missed signals (contract rule 5), or () when it is not:
    ``material`` when the lower end of its bootstrap interval is above zero and the rise exceeds
    ``material_share`` of today's misses (and ``least``: the slack share of the real cases, so that with no misses
    today a rise within the noise is not material); ``budget`` when it uses more than half of the miss budget
    left."""
    if miss_change <= EPS:
        return ()
    reasons = []
    if miss_low > 0 and miss_change > max(material_share * misses_today, least) + EPS:
        reasons.append("material")
    if remaining is not None and miss_change > 0.5 * max(0.0, remaining) + EPS:
        reasons.append("budget")
    return tuple(reasons)


@dataclass(frozen=True)
class _Curves:
    """The replay over every grid index, one row per (re)sample: false alarms, real misses (noise-corrected and
    anchored at today's value ``k0``: a rise adds the real cases it loses, a fall takes off those it catches),
    the share of today's confirmed cases lost (``lost``), and the window's real cases."""

    fa: NDArray[np.float64]  # (R, BINS + 2)
    miss: NDArray[np.float64]
    lost: NDArray[np.float64]
    real: NDArray[np.float64]  # (R,)
    floors: NDArray[np.float64]  # (R, 2)

    @classmethod
    def build(cls, data: ReplayData, k0: int, *, cap: float, resamples: int = 0, seed: int = 0) -> "_Curves":
        """The point estimate (one row), or ``resamples`` rows of the bootstrap: each row redraws every histogram
        cell, negatives then positives, from a Poisson of its count (the order a loop over resamples would draw
        in, so the figures do not depend on drawing them all at once)."""
        if resamples == 0:
            negatives, positives = data.negatives[None], data.positives[None]
        else:
            counts = np.stack([data.negatives, data.positives])
            drawn = np.random.default_rng(seed).poisson(counts, size=(resamples, *counts.shape)).astype(float)
            negatives, positives = drawn[:, 0], drawn[:, 1]
        return cls(*_curves(negatives, positives, data.weights, data.gated, k0, cap))

    def checks(
        self,
        k0: int,
        ks: NDArray[np.int64],
        objective: Objective,
        allowed_rate: float | None,
        anchor: "_Curves | None" = None,
        committed_rate: float = 0.0,
    ) -> Any:
        """``miss_rule_checks`` for candidates ``ks`` in every row, all rules together: (R, len(ks)). With an
        ``anchor`` (the point estimate), resamples vary what the move adds, not today's misses and real cases:
        the question is whether the move stays within the rules, not how sure today's level is."""
        today, real = self.miss[:, [k0]], self.real[:, None]
        if anchor is not None:
            today, real = np.full_like(today, anchor.miss[0, k0]), np.full_like(real, anchor.real[0])
        checks = miss_rule_checks(
            misses_today=today,
            misses_new=today + (self.miss[:, ks] - self.miss[:, [k0]]),
            lost_share=self.lost[:, ks],
            real=real,
            objective=objective,
            allowed_rate=allowed_rate,
            committed_rate=committed_rate,
        )
        ok = np.ones((len(self.real), len(ks)), dtype=bool)
        for passed in checks.values():
            ok &= passed
        return ok

    def beats(
        self,
        k0: int,
        ks: NDArray[np.int64],
        objective: Objective,
        allowed_rate: float | None,
        anchor: "_Curves | None" = None,
        committed_rate: float = 0.0,
    ) -> Any:
        """Whether each candidate beats today's value in each row: a lower cost for a decrease and under the
        cost objective; for an increase under the tolerance objective, fewer false alarms; an increase must
        also stay within the miss rules."""
        c = objective.miss_cost
        cost = self.fa[:, ks] + c * self.miss[:, ks]
        cost0 = (self.fa[:, k0] + c * self.miss[:, k0])[:, None]
        beats = cost < cost0 - EPS
        up = ks > k0
        if up.any():
            gain = beats if objective.kind == "cost" else self.fa[:, ks] < self.fa[:, [k0]] - EPS
            within = self.checks(k0, ks, objective, allowed_rate, anchor, committed_rate)
            beats = np.where(up[None, :], gain & within, beats)
        return beats


def _curves(
    negatives: NDArray[np.float64],
    positives: NDArray[np.float64],
    weights: NDArray[np.float64],
    gated: NDArray[np.bool_],
    k0: int,
    cap: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``_Curves``' arrays for a stack of R histograms (R, K, BINS + 1): fa, miss and lost (R, BINS + 2), the
    real cases (R,) and the floors (R, 2)."""
    fa, _ = replay_curves(negatives, positives, weights)
    excess, floors = real_cases_stacked(negatives, positives, weights, gated, cap=cap)
    stack = len(negatives)
    pre = np.concatenate([np.zeros((stack, 2, 1)), np.cumsum(excess, axis=2)], axis=2)  # (R, 2, BINS + 2)
    today = np.maximum(0.0, pre[:, :, k0]).sum(axis=1)[:, None]
    delta = pre - pre[:, :, [k0]]
    lost_real = np.maximum(0.0, delta).sum(axis=1)  # a rise: the real cases each population loses
    caught = np.maximum(0.0, -delta).sum(axis=1)  # a fall: the real misses it catches
    index = np.arange(BINS + 2)
    miss = np.where(index > k0, today + lost_real, today - np.minimum(today, caught))
    confirmed = np.concatenate([np.zeros((stack, 1)), np.cumsum(weights[gated] @ positives[:, gated], axis=1)], axis=1)
    caught_today = (confirmed[:, -1] - confirmed[:, k0])[:, None]
    band = np.maximum(0.0, confirmed - confirmed[:, [k0]])
    some = caught_today > 0
    lost = np.where(some, band / np.where(some, caught_today, 1.0), np.where(band > 0, np.inf, 0.0))
    return fa, miss, lost, np.maximum(0.0, pre[:, :, -1]).sum(axis=1), floors


@dataclass(frozen=True)
class Budget:
    """The miss budget of one choice: the reference, the rate it allows, and the misses left in the window."""

    reference: Reference
    allowed_rate: float
    rate_today: float
    rate_proposed: float
    remaining: float  # real misses the window could still add before reaching the allowed rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference.label,
            "provisional": self.reference.provisional,
            "referenceRate": round(self.reference.rate, 6),
            "allowedRate": round(self.allowed_rate, 6),
            "rateToday": round(self.rate_today, 6),
            "rateProposed": round(self.rate_proposed, 6),
            "remaining": round(self.remaining, 3),
        }


@dataclass(frozen=True)
class Choice:
    value: float
    direction: str
    current: Replay  # false alarms (weighted) and real misses (noise-corrected) at today's value
    proposed: Replay
    false_alarm_interval: tuple[float, float]
    miss_interval: tuple[float, float]
    beats_share: float
    confidence: str
    risk_flagged: bool
    risk_reasons: tuple[str, ...] = ()
    real_cases: float = 0.0
    confirmed_lost_share: float = 0.0
    noise_floors: tuple[float, float] = (0.0, 0.0)
    budget: Budget | None = None

    @property
    def false_alarm_change(self) -> float:
        return self.proposed.false_alarms - self.current.false_alarms

    @property
    def miss_change(self) -> float:
        return self.proposed.misses - self.current.misses


@dataclass(frozen=True)
class Held:
    """The miss budget stopped a rise: the threshold stays at ``value``; ``further`` was the tuner's choice
    without the budget, and would have put misses at ``rate`` of the real cases."""

    value: float
    further: float
    rate: float
    reference: Reference
    allowed_rate: float

    def text(self, name: str) -> str:
        ref = self.reference
        if ref.rate > 0:
            over = (
                f"{self.rate / ref.rate - 1:.0%} above the reference of {ref.label} ({self.rate:.1%} of real cases "
                f"against {ref.rate:.1%})"
            )
        else:
            over = f"at {self.rate:.1%} of real cases against a reference of {ref.rate:.1%} ({ref.label})"
        return (
            f"{name} held at {self.value:g}: a further rise would put misses {over}; the budget allows "
            f"{self.allowed_rate:.1%}."
        )


@dataclass(frozen=True)
class Chosen:
    choice: Choice | None
    held: Held | None = None


def candidate_range(current: float, lo: float, hi: float, max_move: float) -> tuple[float, float]:
    """The values one cycle may propose: within ``max_move`` of the current value and within [lo, hi],
    rounded inward to the replay grid so rounding can never break the 20 % rule."""
    return grid_range(max(lo, current * (1 - max_move)), min(hi, current * (1 + max_move)))


def grid_range(low: float, high: float) -> tuple[float, float]:
    """[low, high] rounded inward to the replay grid."""
    return math.ceil(low * BINS - 1e-9) / BINS, math.floor(high * BINS + 1e-9) / BINS


def _tidy(ks: NDArray[np.int64], k0: int) -> int:
    """Among equally good grid indexes: the roundest value (0.01, then 0.005), then the smallest move."""

    def roundness(k: int) -> int:
        return 0 if k % 10 == 0 else 1 if k % 5 == 0 else 2

    return int(min(ks, key=lambda k: (roundness(int(k)), abs(int(k) - k0), int(k))))


def _robust(ks: NDArray[np.int64], benefit: NDArray[np.float64], share: NDArray[np.float64], k0: int) -> int:
    """The candidate to propose among point-estimate winners ``ks``. A value on the edge of what the window
    allows (the tolerance, the last dismissal) often fails in resamples; a slightly smaller move that holds in
    95 % (else 80 %) of them is worth more to an approver, unless it gives up more than a fifth of the benefit."""
    best_overall = benefit.max()
    for level in (0.95, 0.80):
        sure = share >= level
        if sure.any() and benefit[sure].max() >= 0.8 * best_overall - 1e-9:
            top = benefit[sure].max()
            return _tidy(ks[sure & (benefit >= top - 1e-9)], k0)
    return _tidy(ks[benefit >= best_overall - 1e-9], k0)


def _pick(
    point: _Curves,
    boot: _Curves,
    k0: int,
    ks: NDArray[np.int64],
    objective: Objective,
    allowed_rate: float | None,
    committed_rate: float = 0.0,
) -> int | None:
    """The grid index of the best candidate among ``ks``, or None when none beats the current value."""
    if len(ks) == 0:
        return None
    fa, miss = point.fa[0], point.miss[0]
    c = objective.miss_cost
    cost = fa + c * miss
    picks: list[int] = []
    # Increase: cut false alarms (under the cost objective: lower the cost) within the miss rules.
    up = ks[ks > k0]
    if len(up):
        up = up[point.beats(k0, up, objective, allowed_rate, None, committed_rate)[0]]
    if len(up):
        benefit = cost[k0] - cost[up] if objective.kind == "cost" else fa[k0] - fa[up]
        share = boot.beats(k0, up, objective, allowed_rate, point, committed_rate).mean(axis=0)
        picks.append(_robust(up, benefit, share, k0))
    # Decrease: only adds false alarms, so it must pay for itself: the real misses it catches, each costing
    # ``miss_cost`` false alarms, outweigh the false alarms it adds.
    down = ks[ks < k0]
    down = down[cost[down] < cost[k0] - EPS]
    if len(down):
        share = boot.beats(k0, down, objective, allowed_rate, point).mean(axis=0)
        picks.append(_robust(down, cost[k0] - cost[down], share, k0))
    if not picks:
        return None
    return max(picks, key=lambda k: (float(cost[k0] - cost[k]), -abs(k - k0)))


def confidence_label(share: float) -> str:
    return "high" if share >= 0.95 else "medium" if share >= 0.80 else "low"


def choose(
    data: ReplayData,
    *,
    current: float,
    lo: float,
    hi: float,
    objective: Objective,
    max_move: float = 0.20,
    allowed: tuple[float, float] | None = None,
    reference: Reference | None = None,
    fixed_value: float | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Chosen:
    """Replay the window under every candidate value and pick the best per ``objective``; or evaluate
    ``fixed_value`` (a value somebody else proposed). The candidates are ``allowed`` (the range the guard allows
    this cycle), else within ``max_move`` of ``current`` and [lo, hi], rounded inward to the grid. With a
    ``reference``, no increase may put the misses above what it allows (the miss budget); ``held`` says when that
    stopped a rise the rest of the rules allowed.

    The bootstrap resamples every histogram cell with a Poisson draw (a per-row Poisson bootstrap, seeded so
    the answer is deterministic) and counts how often the chosen value still beats the current one.
    """
    k0 = grid_index(current)
    cap = objective.noise_floor_max
    point = _Curves.build(data, k0, cap=cap)
    boot = _Curves.build(data, k0, cap=cap, resamples=resamples, seed=seed)
    real = float(point.real[0])
    allowed_rate = reference.allowed_rate(objective, real) if reference is not None else None
    committed = reference.committed_rate if reference is not None else 0.0
    held: Held | None = None
    if fixed_value is None:
        low, high = grid_range(*allowed) if allowed is not None else candidate_range(current, lo, hi, max_move)
        if high < low:
            return Chosen(None)
        ks = np.arange(grid_index(low), grid_index(high) + 1, dtype=np.int64)
        k = _pick(point, boot, k0, ks, objective, allowed_rate, committed)
        if reference is not None and allowed_rate is not None:
            # The best rise with the budget and without it: when they differ, the budget held the threshold.
            ups = ks[ks > k0]
            free = _pick(point, boot, k0, ups, objective, None)
            kept = _pick(point, boot, k0, ups, objective, allowed_rate, committed)
            if free is not None and (kept is None or kept < free):
                held = Held(
                    value=round(k / BINS, 6) if k is not None and k > k0 else current,  # the rise proposed
                    further=round(free / BINS, 6),
                    rate=max(
                        float(point.miss[0, free]) / real,
                        committed + float(point.miss[0, free] - point.miss[0, k0]) / real,
                    )
                    if real > 0
                    else math.inf,
                    reference=reference,
                    allowed_rate=allowed_rate,
                )
        if k is None:
            return Chosen(None, held)
        value = round(k / BINS, 6)
    else:
        value = fixed_value
        k = grid_index(value)
        if k == k0:
            return Chosen(None)
    ks1 = np.array([k], dtype=np.int64)
    share = float(boot.beats(k0, ks1, objective, allowed_rate, point, committed).mean())
    fa_deltas = boot.fa[:, k] - boot.fa[:, k0]
    miss_deltas = boot.miss[:, k] - boot.miss[:, k0]
    today = float(point.miss[0, k0])
    current_replay = Replay(float(point.fa[0, k0]), today)
    proposed_replay = Replay(float(point.fa[0, k]), float(point.miss[0, k]))
    miss_interval = (float(np.percentile(miss_deltas, 5)), float(np.percentile(miss_deltas, 95)))
    budget = None
    if reference is not None and allowed_rate is not None:
        # Today's rate is at least the reference plus what the changes accepted since were replayed to add.
        today_rate = max(today / real, committed) if real > 0 else committed
        added = proposed_replay.misses - today
        budget = Budget(
            reference=reference,
            allowed_rate=allowed_rate,
            rate_today=today_rate,
            rate_proposed=today_rate + added / real if real > 0 else today_rate,
            remaining=(allowed_rate - today_rate) * real,
        )
    reasons = risk_reasons(
        miss_change=proposed_replay.misses - today,
        miss_low=miss_interval[0],
        misses_today=today,
        # Before any accepted change the window is its own reference: the budget is then the per-cycle rule.
        remaining=budget.remaining if budget is not None and not budget.reference.provisional else None,
        material_share=objective.risk_share,
        least=max(objective.miss_slack * real, objective.miss_slack_cases),
    )
    return Chosen(
        Choice(
            value=value,
            direction="increase" if value > current else "decrease",
            current=current_replay,
            proposed=proposed_replay,
            false_alarm_interval=(float(np.percentile(fa_deltas, 5)), float(np.percentile(fa_deltas, 95))),
            miss_interval=miss_interval,
            beats_share=share,
            confidence=confidence_label(share),
            risk_flagged=bool(reasons),
            risk_reasons=reasons,
            real_cases=real,
            confirmed_lost_share=float(point.lost[0, k]) if k > k0 else 0.0,
            noise_floors=(float(point.floors[0, 0]), float(point.floors[0, 1])),
            budget=budget,
        ),
        held,
    )


def choose_value(data: ReplayData, **kwargs: Any) -> Choice | None:
    """``choose`` without the held report: the choice, or None when no candidate beats today's value."""
    return choose(data, **kwargs).choice


def miss_rules_problem(choice: Choice, objective: Objective) -> str | None:
    """Why an increase somebody else proposed (the model) breaks the miss rules on the replay, or None."""
    if choice.direction != "increase":
        return None
    checks = miss_rule_checks(
        misses_today=choice.current.misses,
        misses_new=choice.proposed.misses,
        lost_share=choice.confirmed_lost_share,
        real=choice.real_cases,
        objective=objective,
        allowed_rate=choice.budget.allowed_rate if choice.budget is not None else None,
        committed_rate=choice.budget.reference.committed_rate if choice.budget is not None else 0.0,
    )
    if "confirmed" in checks and not bool(checks["confirmed"]):
        return (
            f"it loses {choice.confirmed_lost_share:.0%} of the cases reviewers confirmed at today's value, more "
            f"than the tolerance of {objective.miss_tolerance:.0%}"
        )
    if "cycle" in checks and not bool(checks["cycle"]):
        return (
            f"it adds {choice.miss_change:.0f} real missed signal(s) to today's {choice.current.misses:.0f}, more "
            f"than the tolerance of {objective.miss_tolerance:.0%} allows in one cycle"
        )
    if "budget" in checks and not bool(checks["budget"]) and choice.budget is not None:
        b = choice.budget
        return (
            f"it would put misses at {b.rate_proposed:.1%} of real cases, above the {b.allowed_rate:.1%} the "
            f"reference of {b.reference.label} allows"
        )
    return None


def impact_score(choice: Choice, miss_cost: float) -> float:
    """What ranks proposals: false alarms cut plus misses caught, a miss weighing ``miss_cost`` false alarms."""
    return -choice.false_alarm_change - miss_cost * choice.miss_change


def impact_numbers(choice: Choice) -> dict[str, Any]:
    """The impact as numbers, in the API's shape (``falseAlarms``, ``misses``: change and 90 % interval;
    ``beatsCurrentShare``), with the figures behind the risk flag and the miss budget beside them."""
    fa_lo, fa_hi = choice.false_alarm_interval
    m_lo, m_hi = choice.miss_interval
    return {
        "falseAlarms": {
            "change": round(choice.false_alarm_change, 3),
            "low": round(fa_lo, 3),
            "high": round(fa_hi, 3),
        },
        "misses": {"change": round(choice.miss_change, 3), "low": round(m_lo, 3), "high": round(m_hi, 3)},
        "beatsCurrentShare": round(choice.beats_share, 4),
        "falseAlarmsToday": round(choice.current.false_alarms, 3),
        "missesToday": round(choice.current.misses, 3),
        "realCases": round(choice.real_cases, 3),
        "confirmedLostShare": round(choice.confirmed_lost_share, 4),
        "noiseFloors": {"gated": round(choice.noise_floors[0], 4), "below": round(choice.noise_floors[1], 4)},
        "riskReasons": list(choice.risk_reasons),
        "missBudget": choice.budget.as_dict() if choice.budget is not None else None,
        "replayConfidence": choice.confidence,
    }


def impact_text(choice: Choice) -> str:
    fa_lo, fa_hi = choice.false_alarm_interval
    m_lo, m_hi = choice.miss_interval
    base = choice.current.false_alarms
    share = ""
    if base > 0 and choice.false_alarm_change < 0:
        share = f" ({-choice.false_alarm_change / base:.0%} of today's)"
    return (
        f"Replayed over the window: false alarms {choice.false_alarm_change:+.0f}{share} "
        f"[90% bootstrap interval {fa_lo:+.0f} to {fa_hi:+.0f}], real missed signals {choice.miss_change:+.0f} "
        f"[{m_lo:+.0f} to {m_hi:+.0f}] against {choice.current.misses:.0f} today; the new value beat the current "
        f"one in {choice.beats_share:.0%} of bootstrap resamples."
    )


def risk_text(choice: Choice) -> str:
    """The risk assessment, in plain sentences: when flagged, it starts with "RISK:" and says which test fired."""
    added = choice.miss_change
    m_lo, m_hi = choice.miss_interval
    if choice.risk_flagged:
        sentences = []
        if "material" in choice.risk_reasons:
            today = choice.current.misses
            of_today = (
                f", {added / today:.0%} of today's {today:.0f}" if today > 0 else ", where the replay finds none today"
            )
            sentences.append(
                f"The replay loses about {added:.0f} real case(s) that would now be missed (90% interval "
                f"{m_lo:+.0f} to {m_hi:+.0f}){of_today}."
            )
        if "budget" in choice.risk_reasons and choice.budget is not None:
            b = choice.budget
            sentences.append(
                f"It would use {added:.0f} of the {max(0.0, b.remaining):.0f} missed signal(s) left in the miss "
                f"budget against the reference of {b.reference.label}: more than half of what is left."
            )
        return "RISK: may raise missed signals. " + " ".join(sentences)
    if choice.direction == "decrease":
        return (
            f"Adds about {choice.false_alarm_change:.0f} false alarm(s) to the review queue to catch "
            f"{-added:.0f} real missed signal(s); no replayed rise in missed signals."
        )
    if added > EPS:
        return (
            f"No material rise in missed signals: the replay loses about {added:.0f} real case(s) (interval "
            f"{m_lo:+.0f} to {m_hi:+.0f}) against {choice.current.misses:.0f} today; watch escalations in the week "
            "after the change."
        )
    return "No replayed rise in missed signals; watch escalations in the week after the change."


# --------------------------------------------------------------------------------------------------- clusters


@dataclass(frozen=True)
class ClusterFound:
    members: list[int]  # row indexes into the input


def cluster_by_features(matrix: NDArray[np.float64], *, min_size: int, similarity: float) -> list[ClusterFound]:
    """Groups of rows whose feature vectors have cosine similarity around ``similarity`` or more (average
    linkage cut at distance ``1 - similarity``); groups smaller than ``min_size`` are dropped. Largest first."""
    n = len(matrix)
    if n < max(min_size, 2):
        return []
    from sklearn.cluster import AgglomerativeClustering

    norms = np.linalg.norm(matrix, axis=1)
    usable = np.flatnonzero(norms > 1e-12)
    if len(usable) < max(min_size, 2):
        return []
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - similarity
    )
    labels = model.fit_predict(matrix[usable])
    groups: dict[int, list[int]] = {}
    for row, label in zip(usable, labels, strict=True):
        groups.setdefault(int(label), []).append(int(row))
    found = [ClusterFound(sorted(m)) for m in groups.values() if len(m) >= min_size]
    return sorted(found, key=lambda c: (-len(c.members), c.members[0]))


def cluster_by_rules(rule_sets: Sequence[Sequence[str]], *, min_size: int) -> list[tuple[tuple[str, ...], list[int]]]:
    """A rule-based agent's decisions grouped by the exact combination of rules that matched."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, rules in enumerate(rule_sets):
        groups.setdefault(tuple(sorted(rules)), []).append(i)
    kept = [(combo, rows) for combo, rows in groups.items() if len(rows) >= min_size]
    return sorted(kept, key=lambda item: (-len(item[1]), item[0]))


def standardise(
    rows: Sequence[Mapping[str, float]], reference: Sequence[Mapping[str, float]], names: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Rows as a matrix standardised by the reference rows (the approvals): returns (matrix, mean, std)."""

    def as_matrix(items: Sequence[Mapping[str, float]]) -> NDArray[np.float64]:
        out = np.zeros((len(items), len(names)))
        for i, item in enumerate(items):
            for j, name in enumerate(names):
                value = item.get(name, 0.0)
                out[i, j] = float(value) if isinstance(value, int | float) else 0.0
        return out

    ref = as_matrix(reference)
    data = as_matrix(rows)
    basis = ref if len(ref) >= 2 else data
    mean = basis.mean(axis=0) if len(basis) else np.zeros(len(names))
    std = basis.std(axis=0) if len(basis) else np.ones(len(names))
    std = np.where(std > 1e-12, std, 1.0)
    return (data - mean) / std, mean, std


def distinguishing_features(
    cluster_matrix: NDArray[np.float64], names: Sequence[str], *, top: int = 3, min_effect: float = 0.5
) -> list[dict[str, Any]]:
    """Features whose mean in the cluster is furthest from the approvals' mean (in approvals' std units)."""
    if len(cluster_matrix) == 0:
        return []
    means = cluster_matrix.mean(axis=0)
    order = np.argsort(-np.abs(means))
    out = []
    for j in order[:top]:
        if abs(means[j]) >= min_effect:
            out.append({"feature": names[j], "effect": round(float(means[j]), 2)})
    return out


# --------------------------------------------------------------------------------------------------- trends


@dataclass(frozen=True)
class WeekStats:
    week_start: str
    decisions: int
    queued: int
    responses: int
    queued_responses: int = 0
    approve: int = 0
    dismiss: int = 0
    escalate: int = 0
    modify: int = 0

    @property
    def dismissal_rate(self) -> float:
        return self.dismiss / self.responses if self.responses else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalate / self.responses if self.responses else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "weekStart": self.week_start,
            "decisions": self.decisions,
            "queued": self.queued,
            "responses": self.responses,
            "responseRate": round(self.queued_responses / self.queued, 4) if self.queued else None,
            "dismissalRate": round(self.dismissal_rate, 4),
            "escalationRate": round(self.escalation_rate, 4),
            "modificationRate": round(self.modify / self.responses, 4) if self.responses else 0.0,
            "approvalRate": round(self.approve / self.responses, 4) if self.responses else 0.0,
        }


@dataclass(frozen=True)
class CreepVerdict:
    """Threshold creep's verdict: whether it fired, and why (or why there is no verdict), in a plain sentence."""

    fired: bool
    reason: str
    p_value: float | None = None
    escalations: tuple[int, int] = (0, 0)  # before and since the change
    responses: tuple[int, int] = (0, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fired": self.fired,
            "reason": self.reason,
            "pValue": self.p_value,
            "escalations": list(self.escalations),
            "responses": list(self.responses),
        }


def threshold_creep(
    weeks: Sequence[WeekStats], *, change_week: str | None, min_escalations: int, alpha: float
) -> CreepVerdict:
    """Threshold creep: since a change that raised a threshold, escalations have fallen while dismissals fell
    too, so the loop may be hiding real cases below its thresholds.

    A test, not a ratio: the weeks of the window before ``change_week`` (the ISO week of the first accepted rise
    in the window) are compared with the weeks since. There is no verdict without such a change (week-to-week
    noise before any change is not creep), nor on fewer than ``min_escalations`` escalations in all. Given the
    escalations on both sides, the number since the change is Binomial under "no change in the escalation rate"
    (its share of responses); creep fires when the one-sided p-value of so few is under ``alpha`` and the
    dismissal rate fell too."""
    if change_week is None:
        return CreepVerdict(False, "no accepted rise of a threshold in the window, so no verdict")
    before = [w for w in weeks if w.week_start < change_week]
    since = [w for w in weeks if w.week_start >= change_week]
    eb, nb = sum(w.escalate for w in before), sum(w.responses for w in before)
    ea, na = sum(w.escalate for w in since), sum(w.responses for w in since)
    counts: dict[str, Any] = {"escalations": (eb, ea), "responses": (nb, na)}
    if nb == 0 or na == 0:
        return CreepVerdict(False, f"no responses on one side of the change of {change_week}, so no verdict", **counts)
    if eb + ea < min_escalations:
        return CreepVerdict(
            False,
            f"{eb + ea} escalation(s) around the change of {change_week}, fewer than the {min_escalations} a "
            "verdict needs",
            **counts,
        )
    p = float(binom.cdf(ea, eb + ea, na / (na + nb)))
    dismissals_fell = sum(w.dismiss for w in since) / na < sum(w.dismiss for w in before) / nb
    fired = p < alpha and dismissals_fell
    reason = (
        f"escalations went from {eb / nb:.1%} of responses before the change of {change_week} to {ea / na:.1%} "
        f"since (one-sided p = {p:.3f})"
        + (", while dismissals fell" if dismissals_fell else ", but dismissals did not fall")
    )
    return CreepVerdict(fired, reason, p, **counts)


# --------------------------------------------------------------------------------------------------- the rules


@dataclass
class Candidate:
    """A proposal before the rules: from either generator, already replayed."""

    threshold_name: str
    current_value: float
    proposed_value: float
    direction: str
    confidence: str
    expected_impact: str
    evidence_count: int
    sample_entry_ids: list[str]
    risk_assessment: str
    risk_flagged: bool
    score: float
    min_value: float
    max_value: float
    evidence_kind: str = "dismiss"
    impact: dict[str, Any] = field(default_factory=dict)
    # The values the guard allows this threshold this cycle (rule 3, from its value at the cycle's start).
    allowed_min: float | None = None
    allowed_max: float | None = None

    def as_output(self) -> dict[str, Any]:
        return {
            "thresholdName": self.threshold_name,
            "currentValue": self.current_value,
            "proposedValue": self.proposed_value,
            "direction": self.direction,
            "confidence": self.confidence,
            "expectedImpact": self.expected_impact,
            "evidenceCount": self.evidence_count,
            "sampleEntryIds": list(self.sample_entry_ids),
            "riskAssessment": self.risk_assessment,
        }


@dataclass(frozen=True)
class CycleFacts:
    """What the rules need to know about the window and the agent."""

    responded: int
    dismissals: int
    response_rate: float | None
    response_days: float
    creep: bool = False
    creep_text: str = ""  # the creep test's sentence, when it fired
    locked: str = ""  # who locked the config, when and why (contract rule 11); empty when it is not locked
    changes_left: int | None = None  # changes from proposals that may still go live this cycle (rule 3)
    held: tuple[str, ...] = ()  # thresholds the miss budget held, in plain sentences

    @property
    def dismissal_rate(self) -> float:
        return self.dismissals / self.responded if self.responded else 0.0


@dataclass
class RulesOutcome:
    proposals: list[Candidate]
    summary: str
    system_health: str
    notes: list[str]


def candidate_problem(c: Candidate, rules: Mapping[str, Any]) -> str | None:
    """Why a candidate breaks a rule that binds every change (2, 3, 5 and the bounds), or None."""
    if c.direction not in ("increase", "decrease"):
        return f"direction {c.direction!r} is not increase/decrease"
    if (c.proposed_value > c.current_value) != (c.direction == "increase") or c.proposed_value == c.current_value:
        return f"direction {c.direction} does not match {c.current_value} -> {c.proposed_value}"
    if not c.min_value - 1e-12 <= c.proposed_value <= c.max_value + 1e-12:
        return f"proposed value {c.proposed_value} is outside the bounds [{c.min_value}, {c.max_value}]"
    if c.allowed_min is not None and c.allowed_max is not None:
        if not c.allowed_min - 1e-9 <= c.proposed_value <= c.allowed_max + 1e-9:
            return (
                f"proposed value {c.proposed_value} is outside the range allowed this cycle "
                f"[{c.allowed_min:g}, {c.allowed_max:g}]"
            )
    else:
        move = abs(c.proposed_value - c.current_value)
        if move > rules["MAX_MOVE_FRACTION"] * abs(c.current_value) + 1e-9:
            return (
                f"moves {move / abs(c.current_value) if c.current_value else math.inf:.0%} of the current value, "
                f"more than {rules['MAX_MOVE_FRACTION']:.0%}"
            )
    if c.evidence_count < rules["MIN_EVIDENCE_ENTRIES"] or len(set(c.sample_entry_ids)) < rules["MIN_EVIDENCE_ENTRIES"]:
        return f"cites {len(set(c.sample_entry_ids))} entries (evidence {c.evidence_count}), fewer than the minimum"
    if c.confidence not in CONFIDENCE_ORDER:
        return f"confidence {c.confidence!r} is not low/medium/high"
    if not c.risk_assessment.strip():
        return "no risk assessment"
    return None


def _creep_sentence(facts: CycleFacts) -> str:
    detail = f" ({facts.creep_text})" if facts.creep_text else ""
    return (
        f"Threshold creep: escalations have fallen since a threshold was raised{detail}; the loop may be hiding "
        "real cases below its thresholds. No increase is proposed until it clears."
    )


def in_baseline(response_days: float, rules: Mapping[str, Any]) -> bool:
    """Whether the window still holds fewer than ``BASELINE_WEEKS`` of decisions with responses: nothing may be
    proposed yet."""
    return response_days < rules["BASELINE_WEEKS"] * 7


def rules_apply(*, candidates: Sequence[Candidate], facts: CycleFacts, rules: Mapping[str, Any]) -> RulesOutcome:
    """The contract's rules 1-5, 10 and 11, in one place, whatever generator made the candidates."""
    notes: list[str] = []
    locked = f" {facts.locked}" if facts.locked else ""
    if in_baseline(facts.response_days, rules):
        return RulesOutcome(
            [],
            f"Baseline period: the window holds {facts.response_days:.1f} days of decisions with responses, fewer "
            f"than the {rules['BASELINE_WEEKS']} weeks needed before the first proposal. Nothing proposed.{locked}",
            "baseline",
            notes,
        )
    rate_text = f"dismissal rate {facts.dismissal_rate:.1%} over {facts.responded} responses"
    if facts.dismissal_rate < rules["HEALTHY_DISMISSAL_RATE"]:
        summary = f"Healthy: {rate_text}, below {rules['HEALTHY_DISMISSAL_RATE']:.0%}. Nothing proposed."
        health = "healthy"
        if facts.creep:
            summary += " " + _creep_sentence(facts)
            health = "needs-attention"
        return RulesOutcome([], summary + locked, health, notes)

    kept: list[Candidate] = []
    for c in candidates:
        problem = candidate_problem(c, rules)
        if problem:
            notes.append(f"dropped {c.threshold_name} {c.direction} to {c.proposed_value}: {problem}")
        elif facts.creep and c.direction == "increase":
            notes.append(
                f"dropped {c.threshold_name} increase to {c.proposed_value}: threshold creep, no rise until it clears"
            )
        else:
            kept.append(c)
    best: dict[str, Candidate] = {}
    for c in sorted(kept, key=lambda c: -c.score):
        if c.threshold_name in best:
            notes.append(f"dropped a second proposal for {c.threshold_name}: one change per threshold a cycle")
        else:
            best[c.threshold_name] = c
    ranked = sorted(best.values(), key=lambda c: (-c.score, c.threshold_name))
    cap = rules["MAX_PROPOSALS_PER_CYCLE"]
    if facts.changes_left is not None and not facts.locked:
        cap = max(0, min(cap, facts.changes_left))
    for c in ranked[cap:]:
        if facts.changes_left is not None and facts.changes_left < rules["MAX_PROPOSALS_PER_CYCLE"]:
            notes.append(
                f"dropped {c.threshold_name}: only {facts.changes_left} more change(s) from proposals may go live "
                "this cycle"
            )
        else:
            notes.append(f"dropped {c.threshold_name}: only {cap} proposals a cycle, ranked by expected impact")
    chosen = [replace(c) for c in ranked[:cap]]
    withheld = []
    if facts.locked:
        withheld = [replace(c) for c in ranked[: rules["MAX_PROPOSALS_PER_CYCLE"]]]
        for c in withheld:
            notes.append(f"not proposed (config locked): {c.threshold_name} {c.current_value} -> {c.proposed_value}")
        chosen = []

    parts = [f"{len(chosen)} proposal(s); {rate_text}."]
    health = "needs-attention"
    if facts.response_rate is not None and facts.response_rate < rules["MIN_RESPONSE_RATE"]:
        for c in chosen:
            c.confidence = "low"
        parts.append(
            f"Response rate {facts.response_rate:.0%} is below {rules['MIN_RESPONSE_RATE']:.0%}: the patterns are"
            " noisy, so every confidence is capped at low. Fix the review input before trusting the loop."
        )
        health = "degraded"
    if facts.creep:
        parts.append(_creep_sentence(facts))
    parts.extend(facts.held)
    flagged = [c.threshold_name for c in chosen if c.risk_flagged]
    if flagged:
        parts.append(f"Flagged as a risk to missed signals (see each risk assessment): {', '.join(flagged)}.")
    if facts.locked:
        parts.append(facts.locked)
        if withheld:
            parts.append(f"The replay found {len(withheld)} change(s) it would otherwise propose (see the notes).")
    elif facts.changes_left is not None and facts.changes_left <= 0:
        parts.append(
            f"{rules['MAX_PROPOSALS_PER_CYCLE']} changes from proposals have already gone live this cycle, the most "
            "rule 3 allows: nothing more is proposed until the next cycle."
        )
    elif not chosen and not facts.held:
        parts.append("No change beat the current thresholds on the replay.")
    return RulesOutcome(chosen, " ".join(parts), health, notes)
