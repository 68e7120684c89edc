"""The synthetic world: cases with a hidden truth, the reference agent's decision rule, and the reviewers.

Pure: numpy only, no database. Every random draw comes from generators seeded from ``(seed, day)``, so a day's
cases (and what the reviewers will say about them) do not depend on what the agent did before: two runs with the
same seed see the same world, and two threshold settings can be compared on the same cases.

Each case has a hidden right action (its *truth*, an index into the agent's actions, weakest first) and one score
per *signal*. The reference agent compares each threshold with its signal; the strongest action whose threshold
its score reaches wins. A scored agent has one signal (its confidence) gating every threshold; a rule-based agent
has one signal per rule.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from auditlog.labels import binary_response

Array = NDArray[np.float64]

SCORED_ACTIONS = ("auto-resolve", "flag", "escalate")
RULE_ACTIONS = ("allow", "review", "block")


@dataclass(frozen=True)
class ThresholdSpec:
    name: str
    action: str
    signal: str
    value: float
    min: float = 0.05
    max: float = 0.99
    rule: str = ""
    score_feature: str = ""  # the feature that carries this threshold's signal, for a rule-based agent


@dataclass(frozen=True)
class Scenario:
    """A world and its starting point. Scores for each truth class are drawn from ranges with gaps between them,
    so well-set thresholds separate the classes except for a few irreducible cases."""

    name: str
    description: str
    actions: tuple[str, ...]
    thresholds: tuple[ThresholdSpec, ...]
    shares: tuple[float, float, float] = (0.80, 0.15, 0.05)  # truth: weakest, middle, strongest
    response_rate: float = 0.85
    label_noise: float = 0.03
    # the share of ``label_noise`` that applies to weakest-action items (a sampled pass escalated by a slip)
    weakest_noise_share: float = 0.1
    modify_share: float = 0.3  # of corrections made as "modify" rather than dismiss/escalate (not in binary mode)
    binary: bool = False
    rule_based: bool = False
    sample_rate: float = 0.10
    # drift: from this week (1-based) the base rate rises and one feature (and the benign scores) shift up
    drift_week: int | None = None
    drift_shares: tuple[float, float, float] = (0.72, 0.21, 0.07)
    drift_shift: float = 0.30
    drift_cap: float = 0.68  # benign scores stay below this, under the middle class's 0.70
    # over-correction: in this week (1-based) an operator's change raises ``bad_threshold`` by ``bad_move``
    bad_change_week: int | None = None
    bad_threshold: str = ""
    bad_move: float = 0.20
    # where the scores of cases deserving the middle action lie (a Beta(a, b) spread over the range)
    middle_range: tuple[float, float] = (0.70, 0.84)
    middle_shape: tuple[float, float] = (2.0, 2.0)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def initial_values(self) -> dict[str, float]:
        return {t.name: t.value for t in self.thresholds}


def _scored(name: str, description: str, flag: float, escalate: float, **kw: Any) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        actions=SCORED_ACTIONS,
        thresholds=(
            ThresholdSpec("flag_threshold", "flag", "confidence", flag),
            ThresholdSpec("escalate_threshold", "escalate", "confidence", escalate),
        ),
        **kw,
    )


SCENARIOS: dict[str, Scenario] = {
    "miscalibrated": _scored(
        "miscalibrated",
        "Thresholds set far too low: about 40 % of reviewed decisions are dismissed at the start.",
        flag=0.38,
        escalate=0.86,
    ),
    "drift": _scored(
        "drift",
        "Well calibrated at first; from week 3 the base rate and the amount feature shift up, and with them the "
        "scores of many benign cases.",
        flag=0.62,
        escalate=0.86,
        drift_week=3,
    ),
    "over-correction": _scored(
        "over-correction",
        "Well calibrated; in week 3 an operator's change raises the flag threshold 20 %, into the cases that "
        "deserve a flag. The watchdog must roll it back.",
        flag=0.62,
        escalate=0.86,
        bad_change_week=3,
        bad_threshold="flag_threshold",
        middle_range=(0.66, 0.80),
        middle_shape=(1.5, 2.5),
    ),
    "over-correction-back-to-back": _scored(
        "over-correction-back-to-back",
        "As over-correction, but two changes go live back to back: a harmless one (escalate_threshold 0.86 to "
        "0.87), and a minute later the bad one. The watchdog must judge them together and roll both back.",
        flag=0.62,
        escalate=0.86,
        bad_change_week=3,
        bad_threshold="flag_threshold",
        middle_range=(0.66, 0.80),
        middle_shape=(1.5, 2.5),
        extra={"harmless_first": ("escalate_threshold", 0.87)},
    ),
    "compounding": _scored(
        "compounding",
        "Benign and flag-worthy scores overlap: each rise of the flag threshold cuts false alarms and loses a few "
        "real cases. A loop that allows a few more misses every cycle walks the threshold into them; the miss "
        "budget must hold it within 10 % of the weeks before the first change.",
        flag=0.42,
        escalate=0.86,
        drift_week=1,  # from the start: the benign scores sit 0.14 higher, up to 0.76
        drift_shares=(0.80, 0.15, 0.05),
        drift_shift=0.14,
        drift_cap=0.76,
        middle_range=(0.58, 0.90),
        middle_shape=(1.6, 2.2),
    ),
    "rules": Scenario(
        name="rules",
        description="A rule-based agent: one rule's threshold is far too low; the tuner clusters by rule.",
        actions=RULE_ACTIONS,
        thresholds=(
            ThresholdSpec("amount_rule", "review", "amount", 0.40, rule="high_amount", score_feature="amount_score"),
            ThresholdSpec(
                "velocity_rule", "review", "velocity", 0.62, rule="high_velocity", score_feature="velocity_score"
            ),
            ThresholdSpec(
                "blocklist_rule", "block", "risk", 0.86, rule="blocklist_match", score_feature="blocklist_score"
            ),
        ),
        rule_based=True,
    ),
    "low-response": _scored(
        "low-response",
        "Thresholds too low, 40 % of queued decisions answered, thumbs up / thumbs down only.",
        flag=0.38,
        escalate=0.86,
        response_rate=0.40,
        binary=True,
    ),
}


def scenario_get(name: str, **overrides: Any) -> Scenario:
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[name]
    return replace(scenario, **overrides) if overrides else scenario


@dataclass
class Cases:
    """One day's cases, as parallel arrays."""

    seconds: NDArray[np.int64]  # offset in the day
    truth: NDArray[np.int64]
    signals: dict[str, Array]
    features: dict[str, Array]
    # the reviewers' draws, made with the case so that they do not depend on the agent
    u_respond: Array
    delay_hours: Array
    u_noise: Array
    u_modify: Array

    def __len__(self) -> int:
        return len(self.truth)


def _counts(n: int, shares: tuple[float, ...]) -> list[int]:
    """Stratified: exact class counts per day, so rates vary with the thresholds, not with sampling luck."""
    raw = np.array(shares, dtype=float) * n
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts))[: n - counts.sum()]] += 1
    return [int(c) for c in counts]


def _spread(rng: np.random.Generator, n: int, lo: float, hi: float, a: float = 2.0, b: float = 2.0) -> Array:
    return lo + (hi - lo) * rng.beta(a, b, size=n)


def _hidden(n: int, share: float) -> int:
    return int(round(n * share))


class World:
    """Makes each day's cases for one scenario and seed."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = int(seed)

    def rng(self, day: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, day, stream])

    def drifted(self, day: int) -> bool:
        week = self.scenario.drift_week
        return week is not None and day >= (week - 1) * 7

    def cases(self, day: int, n: int) -> Cases:
        s = self.scenario
        drifted = self.drifted(day)
        shares = s.drift_shares if drifted else s.shares
        shift = s.drift_shift if drifted else 0.0
        rng = self.rng(day, 1)
        n0, n1, n2 = _counts(n, shares)
        if s.rule_based:
            truth, signals, features = self._rule_cases(rng, n0, n1, n2)
        else:
            truth, signals, features = self._scored_cases(rng, n0, n1, n2, shift)
        order = rng.permutation(n)
        seconds = np.sort(rng.integers(0, 86400, size=n))
        review = self.rng(day, 2)
        return Cases(
            seconds=seconds,
            truth=truth[order],
            signals={k: v[order] for k, v in signals.items()},
            features={k: v[order] for k, v in features.items()},
            u_respond=review.random(n),
            delay_hours=review.uniform(24.0, 48.0, size=n),
            u_noise=review.random(n),
            u_modify=review.random(n),
        )

    def _scored_cases(
        self, rng: np.random.Generator, n0: int, n1: int, n2: int, shift: float
    ) -> tuple[NDArray[np.int64], dict[str, Array], dict[str, Array]]:
        # Benign: most below 0.62 (a drift lifts them), 3 % hard cases that look suspicious.
        h0 = _hidden(n0, 0.03)
        benign = np.concatenate(
            [
                np.minimum(_spread(rng, n0 - h0, 0.0, 0.62, 2.0, 3.0) + shift, self.scenario.drift_cap),
                rng.uniform(0.5, 0.9, h0),
            ]
        )
        # Deserving the middle action: 0.70 to 0.84, except 2 % the agent cannot see (irreducible misses).
        h1 = _hidden(n1, 0.02)
        lo, hi = self.scenario.middle_range
        a, b = self.scenario.middle_shape
        middle = np.concatenate([_spread(rng, n1 - h1, lo, hi, a, b), rng.uniform(0.05, 0.30, h1)])
        # Deserving the strongest: 0.87 to 0.995, except 2 % that look like the middle class.
        h2 = _hidden(n2, 0.02)
        strong = np.concatenate([_spread(rng, n2 - h2, 0.87, 0.995), _spread(rng, h2, lo, hi, a, b)])
        truth = np.concatenate([np.zeros(n0), np.ones(n1), np.full(n2, 2)]).astype(np.int64)
        confidence = np.clip(np.concatenate([benign, middle, strong]), 0.0, 1.0)
        n = n0 + n1 + n2
        # Features that explain the score: the amount drives it for most cases (and carries the drift).
        amount = 4.0 * confidence + rng.normal(0.0, 0.5, n) + (10.0 * shift)
        features = {
            "amount_z": np.round(amount, 3),
            "velocity": np.round(np.clip(3.0 * confidence * rng.uniform(0.5, 1.5, n), 0, None), 3),
            "night": (rng.random(n) < 0.2 + 0.3 * confidence).astype(float),
            "new_device": (rng.random(n) < 0.1 + 0.5 * (truth > 0)).astype(float),
            "account_age_days": np.round(rng.gamma(2.0, 300.0, n) * (1.2 - confidence), 1),
        }
        return truth, {"confidence": confidence}, features

    def _rule_cases(
        self, rng: np.random.Generator, n0: int, n1: int, n2: int
    ) -> tuple[NDArray[np.int64], dict[str, Array], dict[str, Array]]:
        # Benign: amount scores up to 0.6 (the miscalibrated rule fires on many), velocity up to 0.55.
        amount0 = _spread(rng, n0, 0.0, 0.60, 2.0, 2.5)
        velocity0 = _spread(rng, n0, 0.0, 0.55, 2.0, 4.0)
        risk0 = _spread(rng, n0, 0.0, 0.70, 2.0, 5.0)
        # Deserving review: half by amount, half by velocity, 0.66 to 0.95 on their signal; 2 % invisible.
        h1 = _hidden(n1, 0.02)
        half = (n1 - h1) // 2
        amount1 = np.concatenate([_spread(rng, half, 0.66, 0.95), _spread(rng, n1 - half, 0.0, 0.55)])
        velocity1 = np.concatenate(
            [_spread(rng, half, 0.0, 0.5), _spread(rng, n1 - h1 - half, 0.66, 0.95), _spread(rng, h1, 0.0, 0.5)]
        )
        risk1 = _spread(rng, n1, 0.1, 0.80)
        # Deserving a block: the blocklist score is high.
        amount2 = _spread(rng, n2, 0.3, 0.95)
        velocity2 = _spread(rng, n2, 0.2, 0.95)
        risk2 = _spread(rng, n2, 0.88, 0.995)
        truth = np.concatenate([np.zeros(n0), np.ones(n1), np.full(n2, 2)]).astype(np.int64)
        amount = np.concatenate([amount0, amount1, amount2])
        velocity = np.concatenate([velocity0, velocity1, velocity2])
        risk = np.concatenate([risk0, risk1, risk2])
        n = n0 + n1 + n2
        features = {
            "amount_score": np.round(amount, 4),
            "velocity_score": np.round(velocity, 4),
            "blocklist_score": np.round(risk, 4),
            "foreign": (rng.random(n) < 0.15 + 0.2 * (truth > 0)).astype(float),
        }
        return truth, {"amount": amount, "velocity": velocity, "risk": risk}, features


@dataclass
class Decided:
    """The reference agent's decisions on a batch of cases."""

    action: NDArray[np.int64]
    confidence: Array
    threshold_name: list[str]
    threshold_used: Array
    matched_rules: list[list[str]]


def agent_decide(
    scenario: Scenario, signals: Mapping[str, Array], values: Mapping[str, float], *, sl: slice | None = None
) -> Decided:
    """The strongest action whose threshold its signal reaches; below every threshold, the weakest action.

    The threshold named is the winning one (for the weakest action: the one the case came closest to)."""
    specs = scenario.thresholds
    actions = list(scenario.actions)
    sig = {k: (v[sl] if sl is not None else v) for k, v in signals.items()}
    n = len(next(iter(sig.values())))
    scores = np.stack([sig[t.signal] for t in specs])  # (thresholds, n)
    limits = np.array([values[t.name] for t in specs])[:, None]
    fired = scores >= limits
    rank = np.array([actions.index(t.action) for t in specs])[:, None]
    # Winner: highest action rank among fired thresholds, ties broken by the margin; none fired: closest one.
    margin = scores - limits
    key = np.where(fired, rank * 10.0 + margin, -10.0 + margin)
    winner = np.argmax(key, axis=0)
    any_fired = fired.any(axis=0)
    action = np.where(any_fired, rank[winner, 0], 0).astype(np.int64)
    idx = np.arange(n)
    confidence = np.clip(scores[winner, idx], 0.0, 1.0)
    names = [specs[w].name for w in winner]
    used = limits[winner, 0]
    if scenario.rule_based:
        rules = [[specs[i].rule for i in np.flatnonzero(fired[:, j])] for j in range(n)]
    else:
        rules = [[] for _ in range(n)]
    return Decided(action=action, confidence=confidence, threshold_name=names, threshold_used=used, matched_rules=rules)


@dataclass(frozen=True)
class Review:
    action: str  # approve / dismiss / escalate / modify
    modified_action: str | None
    delay_hours: float


def reviewer_response(
    scenario: Scenario, *, taken: int, truth: int, u_noise: float, u_modify: float, delay_hours: float
) -> Review:
    """What a reviewer says about one decision: the truth, corrected by a modify now and then, with label noise."""
    actions = scenario.actions
    if taken == truth:
        right = "approve"
    elif taken > truth:
        right = "dismiss"
    else:
        right = "escalate"
    # Slips happen on alerts; a reviewer rarely escalates a plainly benign auto-resolved case.
    slip = u_noise < scenario.label_noise * (1.0 if taken > 0 else scenario.weakest_noise_share)
    if slip:
        # A slip: a correct decision called wrong, or a wrong one waved through.
        right = "approve" if right != "approve" else ("dismiss" if taken > 0 else "escalate")
    if scenario.binary:
        # Thumbs only: the page's own mapping says what a thumb records.
        thumb = "up" if right == "approve" else "down"
        return Review(binary_response(thumb, taken_action=actions[taken], actions=actions), None, delay_hours)
    if slip:
        return Review(right, None, delay_hours)
    if right != "approve" and truth > 0 and u_modify < scenario.modify_share:
        return Review("modify", actions[truth], delay_hours)
    return Review(right, None, delay_hours)


@dataclass
class TruthCounts:
    """The true rates against the hidden truth, for one week."""

    decisions: int = 0
    fired: int = 0
    false_alarms: int = 0  # fired an action stronger than the case deserved
    positives: int = 0  # cases deserving more than the weakest action
    misses: int = 0  # cases given a weaker action than they deserved
    # the same cases under the initial thresholds (a counterfactual: what the untuned agent would have done)
    initial_fired: int = 0
    initial_false_alarms: int = 0
    initial_misses: int = 0

    def add(self, taken: NDArray[np.int64], truth: NDArray[np.int64], initial: NDArray[np.int64] | None = None) -> None:
        self.decisions += len(taken)
        self.fired += int((taken > 0).sum())
        self.false_alarms += int(((taken > 0) & (taken > truth)).sum())
        self.positives += int((truth > 0).sum())
        self.misses += int((taken < truth).sum())
        if initial is not None:
            self.initial_fired += int((initial > 0).sum())
            self.initial_false_alarms += int(((initial > 0) & (initial > truth)).sum())
            self.initial_misses += int((initial < truth).sum())

    @property
    def initial_miss_rate(self) -> float | None:
        return round(self.initial_misses / self.positives, 4) if self.positives else None

    @property
    def initial_false_alarm_rate(self) -> float | None:
        return round(self.initial_false_alarms / self.initial_fired, 4) if self.initial_fired else None

    @property
    def false_alarm_rate(self) -> float | None:
        return round(self.false_alarms / self.fired, 4) if self.fired else None

    @property
    def miss_rate(self) -> float | None:
        return round(self.misses / self.positives, 4) if self.positives else None
