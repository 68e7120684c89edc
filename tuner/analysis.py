"""The tuner's statistics, apart from the ORM: replay, bootstrap, clustering, trends and the contract's rules.

Everything here takes plain arrays or dataclasses and returns dataclasses, so it can be tested on crafted data
whose right answer is known. Selectors load the data; services store the results.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

BINS = 1000  # confidence resolution of the replay: 0.001
BOOTSTRAP_RESAMPLES = 200
BOOTSTRAP_SEED = 20260302
CONFIDENCE_ORDER = {"low": 0, "medium": 1, "high": 2}


# --------------------------------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class ReplayData:
    """Weighted confidence histograms of one threshold's two populations.

    Row ``k`` of ``negatives`` / ``positives`` holds the per-bin counts of decisions that carry weight
    ``weights[k]`` (1 for queued-by-firing decisions, 1 / sample rate for sampled weakest-action ones).
    A *negative* is a decision that should not take the gated action (a dismissal at that action, or an
    approved / dismissed decision just below it); a *positive* is one that should (an approved or escalated
    decision at that action, or an escalated one just below it). Under a threshold value ``v`` a decision in
    bin ``b`` takes the gated action when ``b >= v * BINS``.
    """

    negatives: NDArray[np.float64]  # shape (K, BINS + 1)
    positives: NDArray[np.float64]
    weights: NDArray[np.float64]  # shape (K,)

    @classmethod
    def empty(cls, weights: Sequence[float] = (1.0,)) -> "ReplayData":
        k = len(weights)
        return cls(np.zeros((k, BINS + 1)), np.zeros((k, BINS + 1)), np.asarray(weights, dtype=float))

    @classmethod
    def from_confidences(
        cls,
        negatives: Sequence[float],
        positives: Sequence[float],
        *,
        sampled_negatives: Sequence[float] = (),
        sampled_positives: Sequence[float] = (),
        sample_rate: float = 1.0,
    ) -> "ReplayData":
        """Build from raw confidences (tests and small data)."""
        data = cls.empty((1.0, 1.0 / sample_rate))
        for row, values in ((0, negatives), (1, sampled_negatives)):
            for c in values:
                data.negatives[row, bin_of(c)] += 1
        for row, values in ((0, positives), (1, sampled_positives)):
            for c in values:
                data.positives[row, bin_of(c)] += 1
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
    """False alarms and misses for every grid index 0..BINS+1: ``fa[k]`` = weighted negatives in bins >= k,
    ``miss[k]`` = weighted positives in bins < k."""
    neg = weights @ negatives
    pos = weights @ positives
    fa = np.concatenate([np.cumsum(neg[::-1])[::-1], [0.0]])
    miss = np.concatenate([[0.0], np.cumsum(pos)])
    return fa, miss


@dataclass(frozen=True)
class Replay:
    false_alarms: float
    misses: float


def replay_at(data: ReplayData, value: float) -> Replay:
    fa, miss = replay_curves(data.negatives, data.positives, data.weights)
    k = grid_index(value)
    return Replay(float(fa[k]), float(miss[k]))


@dataclass(frozen=True)
class Objective:
    kind: str = "tolerance"  # or "cost"
    miss_tolerance: float = 0.05
    miss_cost: float = 5.0


@dataclass(frozen=True)
class Choice:
    value: float
    direction: str
    current: Replay
    proposed: Replay
    false_alarm_interval: tuple[float, float]
    miss_interval: tuple[float, float]
    beats_share: float
    confidence: str
    risk_flagged: bool

    @property
    def false_alarm_change(self) -> float:
        return self.proposed.false_alarms - self.current.false_alarms

    @property
    def miss_change(self) -> float:
        return self.proposed.misses - self.current.misses


def candidate_range(current: float, lo: float, hi: float, max_move: float) -> tuple[float, float]:
    """The values one cycle may propose: within ``max_move`` of the current value and within [lo, hi],
    rounded inward to the replay grid so rounding can never break the 20 % rule."""
    low = max(lo, current * (1 - max_move))
    high = min(hi, current * (1 + max_move))
    return math.ceil(low * BINS - 1e-9) / BINS, math.floor(high * BINS + 1e-9) / BINS


def _tidy(ks: NDArray[np.int64], k0: int) -> int:
    """Among equally good grid indexes: the roundest value (0.01, then 0.005), then the smallest move."""

    def roundness(k: int) -> int:
        return 0 if k % 10 == 0 else 1 if k % 5 == 0 else 2

    return int(min(ks, key=lambda k: (roundness(int(k)), abs(int(k) - k0), int(k))))


@dataclass(frozen=True)
class _Bootstrap:
    """Replay curves of every resample: ``fa[b, k]`` and ``miss[b, k]``, and the weighted positives ``pos[b]``."""

    fa: NDArray[np.float64]
    miss: NDArray[np.float64]
    pos: NDArray[np.float64]

    @classmethod
    def draw(cls, data: ReplayData, *, resamples: int, seed: int) -> "_Bootstrap":
        rng = np.random.default_rng(seed)
        fa = np.empty((resamples, BINS + 2))
        miss = np.empty((resamples, BINS + 2))
        pos = np.empty(resamples)
        for b in range(resamples):
            negatives = rng.poisson(data.negatives).astype(float)
            positives = rng.poisson(data.positives).astype(float)
            fa[b], miss[b] = replay_curves(negatives, positives, data.weights)
            pos[b] = float(data.weights @ positives.sum(axis=1))
        return cls(fa, miss, pos)

    def shares(self, k0: int, ks: NDArray[np.int64], objective: Objective) -> NDArray[np.float64]:
        """For each candidate, the share of resamples in which it beats the current value: a lower cost for
        the cost objective and for decreases; for an increase under the tolerance objective, fewer false alarms
        with misses risen by at most the tolerance."""
        if len(ks) == 0 or len(self.pos) == 0:
            return np.zeros(len(ks))
        c = objective.miss_cost
        cost = self.fa[:, ks] + c * self.miss[:, ks]
        cost0 = (self.fa[:, k0] + c * self.miss[:, k0])[:, None]
        beats = cost < cost0 - 1e-9
        if objective.kind != "cost":
            up = ks > k0
            tolerated = (self.miss[:, ks] - self.miss[:, k0][:, None]) <= objective.miss_tolerance * self.pos[:, None]
            cut = self.fa[:, ks] < self.fa[:, k0][:, None] - 1e-9
            beats = np.where(up[None, :], cut & tolerated, beats)
        return np.asarray(beats.mean(axis=0), dtype=float)


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
    fa: NDArray[np.float64],
    miss: NDArray[np.float64],
    k0: int,
    ks: NDArray[np.int64],
    positives: float,
    objective: Objective,
    boot: _Bootstrap,
) -> int | None:
    """The grid index of the best candidate among ``ks``, or None when none beats the current value."""
    if len(ks) == 0:
        return None
    c = objective.miss_cost
    cost = fa + c * miss
    if objective.kind == "cost":
        better = ks[cost[ks] < cost[k0] - 1e-9]
        if len(better) == 0:
            return None
        return _robust(better, cost[k0] - cost[better], boot.shares(k0, better, objective), k0)
    picks: list[int] = []
    # Increase: cut the most false alarms while replayed misses rise by at most the tolerance.
    up = ks[ks > k0]
    up = up[(miss[up] - miss[k0] <= objective.miss_tolerance * positives + 1e-9) & (fa[up] < fa[k0] - 1e-9)]
    if len(up):
        picks.append(_robust(up, fa[k0] - fa[up], boot.shares(k0, up, objective), k0))
    # Decrease: only adds false alarms, so it must pay for itself: the misses it catches, each costing
    # ``miss_cost`` false alarms, outweigh the false alarms it adds.
    down = ks[ks < k0]
    down = down[cost[down] < cost[k0] - 1e-9]
    if len(down):
        picks.append(_robust(down, cost[k0] - cost[down], boot.shares(k0, down, objective), k0))
    if not picks:
        return None
    return max(picks, key=lambda k: (float(cost[k0] - cost[k]), -abs(k - k0)))


def confidence_label(share: float) -> str:
    return "high" if share >= 0.95 else "medium" if share >= 0.80 else "low"


def choose_value(
    data: ReplayData,
    *,
    current: float,
    lo: float,
    hi: float,
    objective: Objective,
    max_move: float = 0.20,
    fixed_value: float | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Choice | None:
    """Replay the window under every candidate value and pick the best per ``objective``; or evaluate
    ``fixed_value`` (a value somebody else proposed). Returns None when no candidate beats today's value.

    The bootstrap resamples every histogram cell with a Poisson draw (a per-row Poisson bootstrap, seeded so
    the answer is deterministic) and counts how often the chosen value still beats the current one.
    """
    fa, miss = replay_curves(data.negatives, data.positives, data.weights)
    k0 = grid_index(current)
    boot = _Bootstrap.draw(data, resamples=resamples, seed=seed)
    if fixed_value is None:
        low, high = candidate_range(current, lo, hi, max_move)
        if high < low:
            return None
        ks = np.arange(grid_index(low), grid_index(high) + 1, dtype=np.int64)
        k = _pick(fa, miss, k0, ks, data.positives_total, objective, boot)
        if k is None:
            return None
        value = round(k / BINS, 6)
    else:
        value = fixed_value
        k = grid_index(value)
        if k == k0:
            return None
    share = float(boot.shares(k0, np.array([k], dtype=np.int64), objective)[0])
    fa_deltas = boot.fa[:, k] - boot.fa[:, k0]
    miss_deltas = boot.miss[:, k] - boot.miss[:, k0]
    current_replay = Replay(float(fa[k0]), float(miss[k0]))
    proposed_replay = Replay(float(fa[k]), float(miss[k]))
    return Choice(
        value=value,
        direction="increase" if value > current else "decrease",
        current=current_replay,
        proposed=proposed_replay,
        false_alarm_interval=(float(np.percentile(fa_deltas, 5)), float(np.percentile(fa_deltas, 95))),
        miss_interval=(float(np.percentile(miss_deltas, 5)), float(np.percentile(miss_deltas, 95))),
        beats_share=share,
        confidence=confidence_label(share),
        risk_flagged=proposed_replay.misses > current_replay.misses + 1e-9,
    )


def impact_score(choice: Choice, miss_cost: float) -> float:
    """What ranks proposals: false alarms cut plus misses caught, a miss weighing ``miss_cost`` false alarms."""
    return -choice.false_alarm_change - miss_cost * choice.miss_change


def impact_text(choice: Choice) -> str:
    fa_lo, fa_hi = choice.false_alarm_interval
    m_lo, m_hi = choice.miss_interval
    base = choice.current.false_alarms
    share = ""
    if base > 0 and choice.false_alarm_change < 0:
        share = f" ({-choice.false_alarm_change / base:.0%} of today's)"
    return (
        f"Replayed over the window: false alarms {choice.false_alarm_change:+.0f}{share} "
        f"[90% bootstrap interval {fa_lo:+.0f} to {fa_hi:+.0f}], missed signals {choice.miss_change:+.0f} "
        f"[{m_lo:+.0f} to {m_hi:+.0f}]; the new value beat the current one in {choice.beats_share:.0%} of "
        f"bootstrap resamples."
    )


def risk_text(choice: Choice) -> str:
    if choice.risk_flagged:
        return (
            f"RISK: may raise missed signals: the replay loses {choice.miss_change:.0f} case(s) reviewers "
            f"approved or escalated (interval {choice.miss_interval[0]:+.0f} to {choice.miss_interval[1]:+.0f})."
        )
    if choice.direction == "decrease":
        return (
            f"Adds about {choice.false_alarm_change:.0f} false alarm(s) to the review queue to catch "
            f"{-choice.miss_change:.0f} missed signal(s); no replayed rise in missed signals."
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


def threshold_creep(weeks: Sequence[WeekStats], *, min_responses: int = 20, drop: float = 0.5) -> bool:
    """Escalations falling below their norm while dismissals fall: the latest week's escalation rate is under
    ``drop`` times the earlier weeks' average, and its dismissal rate is under theirs too."""
    usable = [w for w in weeks if w.responses >= min_responses]
    if len(usable) < 3:
        return False
    latest, earlier = usable[-1], usable[:-1]
    esc_norm = sum(w.escalation_rate for w in earlier) / len(earlier)
    dis_norm = sum(w.dismissal_rate for w in earlier) / len(earlier)
    return esc_norm > 0 and latest.escalation_rate < drop * esc_norm and latest.dismissal_rate < dis_norm


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
    """What the rules need to know about the window."""

    responded: int
    dismissals: int
    response_rate: float | None
    response_days: float
    creep: bool

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


def rules_apply(*, candidates: Sequence[Candidate], facts: CycleFacts, rules: Mapping[str, Any]) -> RulesOutcome:
    """The contract's rules 1-5, in one place, whatever generator made the candidates."""
    notes: list[str] = []
    baseline_days = rules["BASELINE_WEEKS"] * 7
    if facts.response_days < baseline_days:
        return RulesOutcome(
            [],
            f"Baseline period: responses span {facts.response_days:.1f} days of the window, fewer than the "
            f"{rules['BASELINE_WEEKS']} weeks needed before the first proposal. Nothing proposed.",
            "healthy",
            notes,
        )
    rate_text = f"dismissal rate {facts.dismissal_rate:.1%} over {facts.responded} responses"
    if facts.dismissal_rate < rules["HEALTHY_DISMISSAL_RATE"]:
        summary = f"Healthy: {rate_text}, below {rules['HEALTHY_DISMISSAL_RATE']:.0%}. Nothing proposed."
        health = "healthy"
        if facts.creep:
            summary += (
                " Threshold creep: escalations have fallen below their norm while dismissals fell; the loop may be"
                " suppressing real signals."
            )
            health = "needs-attention"
        return RulesOutcome([], summary, health, notes)

    kept: list[Candidate] = []
    for c in candidates:
        problem = candidate_problem(c, rules)
        if problem:
            notes.append(f"dropped {c.threshold_name} {c.direction} to {c.proposed_value}: {problem}")
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
    for c in ranked[cap:]:
        notes.append(f"dropped {c.threshold_name}: only {cap} proposals a cycle, ranked by expected impact")
    chosen = [replace(c) for c in ranked[:cap]]

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
        parts.append(
            "Threshold creep: escalations have fallen below their norm while dismissals fell; the loop may be"
            " suppressing real signals."
        )
    flagged = [c.threshold_name for c in chosen if c.risk_flagged]
    if flagged:
        parts.append(f"Flagged as possibly raising missed signals: {', '.join(flagged)}.")
    if not chosen:
        parts.append("No change beat the current thresholds on the replay.")
    return RulesOutcome(chosen, " ".join(parts), health, notes)
