"""Replay: the same loop over a labelled CSV instead of a synthetic world.

The label column is the reviewers' truth; a score column (or a logistic regression trained on the first periods,
or simple text features) gives the agent's confidence; a binary agent (``pass`` < ``flag``) flags when the score
reaches its one threshold, starting from the value given. Data time is mapped onto simulated weeks: one
``period`` of data (a week by default, 6 hours for a two-day data set) becomes one simulated week, so the weekly
tuner, the reviewers' one-to-two-day delay and the watchdog run on the simulated clock as in ``simulate``.

Reading and modelling are pure (plain lists and numpy); ``replay_run`` drives the database through ``Loop``.
"""

import csv
import gzip
import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from numpy.typing import NDArray

from simulation.runner import Loop, RunResult, agent_id_free, default_start, monday_on_or_before
from simulation.world import Cases, Scenario, ThresholdSpec

WEEK_SECONDS = 7 * 86400
REPLAY_ACTIONS = ("pass", "flag")


class ReplayError(ValueError):
    """Bad arguments or data, said in terms of the columns and options."""


@dataclass(frozen=True)
class ReplaySpec:
    csv: Path
    label_col: str
    threshold: float
    time_col: str | None = None
    time_unit: str = "auto"  # auto / datetime / seconds / index
    period_hours: float = 168.0  # data hours per simulated week
    batch_rows: int = 500  # without a time column: rows per simulated week, in file order
    positive: tuple[str, ...] = ("1", "yes", "true", "spam", "fraud")
    score_col: str | None = None
    feature_cols: tuple[str, ...] = ()
    text_col: str | None = None
    train_periods: int = 2
    class_weight: str | None = None  # "balanced": the model weighs the rare class up (its scores run higher)
    weeks: int | None = None
    response_rate: float = 0.9
    sample_rate: float = 0.10
    seed: int = 1
    objective: str = "tolerance"  # the agent's tuner objective: tolerance or cost
    miss_cost: float = 5.0
    # Reviewers' slips (``Scenario.label_noise``): this share of their answers is wrong, on flags and on sampled
    # pass decisions alike (a legitimate pass escalated, a fraud waved through).
    label_noise: float = 0.03


def resolve_csv(path: str | Path) -> Path:
    """A path as given, else relative to settings.LOOPSITE_DATA_DIR."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    in_data = Path(settings.LOOPSITE_DATA_DIR) / candidate
    if in_data.exists():
        return in_data
    raise ReplayError(f"--csv {path}: no such file (nor under LOOPSITE_DATA_DIR)")


def read_rows(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    handle = io.TextIOWrapper(opener(path, "rb"), encoding="utf-8", newline="")  # type: ignore[operator]
    reader = csv.reader(handle)
    header = next(reader)
    return header, reader


def _column(header: Sequence[str], name: str, option: str) -> int:
    if name not in header:
        raise ReplayError(f"{option} {name!r} is not a column; the file has: {', '.join(header[:40])}")
    return header.index(name)


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        return math.nan
    return number


def text_features(text: str) -> dict[str, float]:
    """Simple, model-free features of a short message (for the SMS data set)."""
    words = re.findall(r"[a-z']+", text.lower())
    letters = [c for c in text if c.isalpha()]
    return {
        "length": float(len(text)),
        "digits": float(sum(c.isdigit() for c in text)),
        "upper_share": round(sum(c.isupper() for c in letters) / len(letters), 4) if letters else 0.0,
        "exclamations": float(text.count("!")),
        "currency": float(sum(text.count(c) for c in "£$€")),
        "url": float(bool(re.search(r"https?://|www\.|\.com\b", text.lower()))),
        "phone_like": float(bool(re.search(r"\d{5,}", text))),
        "promo_words": float(sum(w in PROMO_WORDS for w in words)),
        "words": float(len(words)),
    }


PROMO_WORDS = frozenset(
    ("free", "win", "won", "winner", "prize", "cash", "claim", "call", "txt", "text", "urgent", "offer", "award")
    + ("guaranteed", "reply", "stop", "mobile")
)


@dataclass
class Table:
    """The rows of the CSV reduced to what the replay needs, in time order."""

    times: NDArray[np.float64]  # seconds since the first row
    labels: NDArray[np.int64]
    scores: NDArray[np.float64] | None
    features: dict[str, NDArray[np.float64]]
    feature_names: list[str] = field(default_factory=list)


def load_table(spec: ReplaySpec) -> Table:
    header, reader = read_rows(spec.csv)
    label_i = _column(header, spec.label_col, "--label-col")
    time_i = _column(header, spec.time_col, "--time-col") if spec.time_col else None
    score_i = _column(header, spec.score_col, "--score-col") if spec.score_col else None
    feat_i = [_column(header, name, "--feature-cols") for name in spec.feature_cols]
    text_i = _column(header, spec.text_col, "--text-col") if spec.text_col else None
    if score_i is None and not feat_i and text_i is None:
        raise ReplayError("give --score-col, or --feature-cols (a model is trained), or --text-col")
    positive = {p.strip().lower() for p in spec.positive}
    raw_times: list[str] = []
    labels: list[int] = []
    scores: list[float] = []
    feats: list[list[float]] = []
    texts: list[dict[str, float]] = []
    for row in reader:
        if len(row) < len(header):
            continue
        labels.append(1 if row[label_i].strip().lower() in positive else 0)
        if time_i is not None:
            raw_times.append(row[time_i])
        if score_i is not None:
            scores.append(_number(row[score_i]))
        if feat_i:
            feats.append([_number(row[i]) for i in feat_i])
        if text_i is not None:
            texts.append(text_features(row[text_i]))
    if not labels:
        raise ReplayError(f"{spec.csv.name}: no rows")
    n = len(labels)
    times = _times(raw_times, spec, n)
    order = np.argsort(times, kind="stable")
    features: dict[str, NDArray[np.float64]] = {}
    names: list[str] = []
    if feat_i:
        matrix = np.nan_to_num(np.array(feats, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
        for j, name in enumerate(spec.feature_cols):
            features[name] = matrix[order, j]
            names.append(name)
    if texts:
        for name in texts[0]:
            features[name] = np.array([t[name] for t in texts], dtype=float)[order]
            names.append(name)
    score_array = None
    if scores:
        score_array = np.clip(np.nan_to_num(np.array(scores, dtype=float)[order], nan=0.0), 0.0, 1.0)
    return Table(
        times=times[order] - times.min(),
        labels=np.array(labels, dtype=np.int64)[order],
        scores=score_array,
        features=features,
        feature_names=names,
    )


def _times(raw: list[str], spec: ReplaySpec, n: int) -> NDArray[np.float64]:
    """Seconds of data time for each row. Without a time column, rows in file order, ``batch_rows`` a period."""
    period = spec.period_hours * 3600
    if not raw:
        return np.arange(n, dtype=float) * (period / max(1, spec.batch_rows))
    unit = spec.time_unit
    if unit == "auto":
        unit = "seconds" if not math.isnan(_number(raw[0])) else "datetime"
    if unit == "datetime":
        try:
            return np.array([datetime.fromisoformat(v).timestamp() for v in raw], dtype=float)
        except ValueError as exc:
            raise ReplayError(f"--time-col {spec.time_col}: not an ISO date-time ({exc})") from None
    values = np.array([_number(v) for v in raw], dtype=float)
    if np.isnan(values).any():
        raise ReplayError(f"--time-col {spec.time_col}: not a number in every row")
    if unit == "seconds":
        return values
    if unit == "index":
        # A period number per row (e.g. a week index): spread each period's rows evenly through it, in file order.
        out = np.empty(n, dtype=float)
        for value in np.unique(values):
            rows = np.flatnonzero(values == value)
            out[rows] = value * period + (np.arange(len(rows)) + 0.5) * (period / len(rows))
        return out
    raise ReplayError(f"--time-unit {unit!r}: use auto, datetime, seconds or index")


def train_scores(
    table: Table, train: NDArray[np.bool_], seed: int, class_weight: str | None = None
) -> NDArray[np.float64]:
    """A logistic regression on standardised features, fitted on the training rows (its scores are probabilities;
    with ``class_weight="balanced"`` the rare class weighs as much as the other, as fraud models often do)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    matrix = np.column_stack([table.features[n] for n in table.feature_names])
    y = table.labels[train]
    if len(np.unique(y)) < 2:
        raise ReplayError("the training periods hold only one class; use more --train-periods")
    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed, class_weight=class_weight)
    )
    model.fit(matrix[train], y)
    return np.asarray(model.predict_proba(matrix)[:, 1], dtype=float)


def replay_scenario(spec: ReplaySpec) -> Scenario:
    return Scenario(
        name=f"replay-{spec.csv.name.split('.')[0]}",
        description=f"Replay of {spec.csv.name}",
        actions=REPLAY_ACTIONS,
        thresholds=(ThresholdSpec("flag_threshold", "flag", "score", spec.threshold, min=0.0, max=1.0),),
        response_rate=spec.response_rate,
        label_noise=spec.label_noise,
        weakest_noise_share=1.0,
        modify_share=0.0,
        binary=True,
        sample_rate=spec.sample_rate,
        extra={"agent_options": {"objective": spec.objective, "miss_cost": spec.miss_cost}},
    )


@dataclass
class Prepared:
    """The replayed rows as simulated days."""

    days: int
    day_of: NDArray[np.int64]
    seconds: NDArray[np.int64]
    labels: NDArray[np.int64]
    scores: NDArray[np.float64]
    features: dict[str, NDArray[np.float64]]
    trained: bool


def prepare(spec: ReplaySpec, table: Table) -> Prepared:
    period = spec.period_hours * 3600
    period_of = np.floor(table.times / period).astype(np.int64)
    trained = table.scores is None
    if trained:
        train = period_of < spec.train_periods
        if not train.any() or train.all():
            raise ReplayError("--train-periods leaves no rows to train on or none to replay")
        scores = train_scores(table, train, spec.seed, spec.class_weight)
    else:
        assert table.scores is not None
        scores = table.scores
    first = spec.train_periods if trained else 0
    keep = period_of >= first
    if spec.weeks is not None:
        keep &= period_of < first + spec.weeks
    if not keep.any():
        raise ReplayError("no rows left to replay after the training periods")
    # Simulated seconds since the first replayed period's start: one period of data is one simulated week.
    sim = (table.times[keep] - first * period) * (WEEK_SECONDS / period)
    day_of = np.floor(sim / 86400).astype(np.int64)
    return Prepared(
        days=int(day_of.max()) + 1,
        day_of=day_of,
        seconds=np.floor(sim - day_of * 86400).astype(np.int64),
        labels=table.labels[keep],
        scores=scores[keep],
        features={k: v[keep] for k, v in table.features.items()},
        trained=trained,
    )


def day_cases(prepared: Prepared, day: int, seed: int) -> Cases | None:
    lo, hi = np.searchsorted(prepared.day_of, [day, day + 1])
    n = int(hi - lo)
    if n <= 0:
        return None
    rng = np.random.default_rng([seed, day, 2])
    return Cases(
        seconds=prepared.seconds[lo:hi],
        truth=prepared.labels[lo:hi],
        signals={"score": prepared.scores[lo:hi]},
        features={k: np.round(v[lo:hi], 6) for k, v in prepared.features.items()},
        u_respond=rng.random(n),
        delay_hours=rng.uniform(24.0, 48.0, size=n),
        u_noise=rng.random(n),
        u_modify=rng.random(n),
    )


def _empty_cases() -> Cases:
    empty_f = np.zeros(0, dtype=float)
    return Cases(
        seconds=np.zeros(0, dtype=np.int64),
        truth=np.zeros(0, dtype=np.int64),
        signals={"score": empty_f},
        features={},
        u_respond=empty_f,
        delay_hours=empty_f,
        u_noise=empty_f,
        u_modify=empty_f,
    )


def replay_run(
    spec: ReplaySpec,
    *,
    start: date | None = None,
    agent_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    table = load_table(spec)
    prepared = prepare(spec, table)
    scenario = replay_scenario(spec)
    weeks = (prepared.days + 6) // 7
    start = monday_on_or_before(start) if start else default_start(weeks)
    default_id = f"replay-{re.sub(r'[^a-z0-9]+', '-', spec.csv.name.split('.')[0].lower())}-{spec.seed}"
    agent_id = agent_id_free(agent_id, explicit=True) if agent_id else agent_id_free(default_id)
    loop = Loop(scenario=scenario, agent_id=agent_id, start=start, seed=spec.seed, name=f"Replay of {spec.csv.name}")
    rows = loop.run(
        days=prepared.days,
        cases_for_day=lambda day: day_cases(prepared, day, spec.seed) or _empty_cases(),
        progress=progress,
    )
    return RunResult(
        agent_id=agent_id,
        scenario=scenario.name,
        seed=spec.seed,
        per_day=round(len(prepared.labels) / max(1, prepared.days)),
        weeks=weeks,
        start=start,
        rows=rows,
        events=loop.events,
    )
