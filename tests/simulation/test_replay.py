"""Replay over a labelled CSV: reading, time mapping, the model, and the loop on the shared fraud data set."""

import csv
import gzip
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from loopsite.rules import rule
from simulation.replay import ReplayError, ReplaySpec, load_table, prepare, text_features
from tests.conftest import data_file

FRAUD_FEATURES = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "TERMINAL_ID_NB_TX_1DAY_WINDOW",
    "TERMINAL_ID_RISK_1DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW",
    "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_30DAY_WINDOW",
    "TERMINAL_ID_RISK_30DAY_WINDOW",
]


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _scored_csv(tmp_path: Path, weeks: int = 3, per_week: int = 70) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(weeks * per_week):
        label = int(rng.random() < 0.2)
        score = rng.uniform(0.6, 1.0) if label else rng.uniform(0.0, 0.7)
        rows.append([i * (7 * 86400 // per_week), label, round(score, 4), round(rng.normal(), 3)])
    return _write(tmp_path / "scored.csv.gz", ["t", "label", "score", "x"], rows)


def test_load_table__unknown_column__error_names_the_option(tmp_path: Path) -> None:
    path = _scored_csv(tmp_path)
    with pytest.raises(ReplayError, match="--label-col 'nope'"):
        load_table(ReplaySpec(csv=path, label_col="nope", threshold=0.3, score_col="score"))


def test_load_table__no_score_features_or_text__error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="--score-col"):
        load_table(ReplaySpec(csv=_scored_csv(tmp_path), label_col="label", threshold=0.3))


def test_prepare__a_period_of_data_becomes_a_simulated_week(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "six_hours.csv", ["t", "y", "s"], [[h * 3600, 0, 0.1] for h in range(12)]
    )  # 12 hours of data
    spec = ReplaySpec(csv=path, label_col="y", threshold=0.5, score_col="s", time_col="t", period_hours=6)
    prepared = prepare(spec, load_table(spec))
    # An hour of data is 28 simulated hours: the rows fall on days floor(h * 7 / 6) of two simulated weeks.
    assert prepared.day_of.tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    assert prepared.seconds[1] == 4 * 3600


def test_prepare__week_index__rows_spread_through_their_week(tmp_path: Path) -> None:
    path = _write(tmp_path / "weeks.csv", ["week", "y", "s"], [[0, 0, 0.1]] * 7 + [[1, 1, 0.9]] * 7)
    spec = ReplaySpec(csv=path, label_col="y", threshold=0.5, score_col="s", time_col="week", time_unit="index")
    prepared = prepare(spec, load_table(spec))
    assert prepared.day_of.tolist() == list(range(14))


def test_prepare__feature_model__trained_on_first_periods_which_are_not_replayed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [[i * 3600, int(x > 0.5), round(float(x), 4)] for i, x in enumerate(rng.normal(0, 1, 24 * 7 * 3))]
    path = _write(tmp_path / "f.csv", ["t", "y", "x"], rows)
    spec = ReplaySpec(csv=path, label_col="y", threshold=0.5, feature_cols=("x",), time_col="t", train_periods=1)
    prepared = prepare(spec, load_table(spec))
    assert prepared.trained and prepared.days == 14
    high = prepared.scores[prepared.features["x"] > 1.5]
    low = prepared.scores[prepared.features["x"] < -0.5]
    assert high.min() > 0.5 > low.max()


def test_text_features__spam_like_message__counted() -> None:
    f = text_features("WINNER!! Claim your FREE prize: call 09061701461 now www.win.com")
    assert f["exclamations"] == 2 and f["url"] == 1.0 and f["phone_like"] == 1.0 and f["promo_words"] >= 4


@pytest.mark.django_db
def test_replay_command__scored_csv__table_and_files(tmp_path: Path) -> None:
    from io import StringIO

    out = StringIO()
    call_command(
        "replay",
        csv=str(_scored_csv(tmp_path)),
        label_col="label",
        score_col="score",
        time_col="t",
        threshold=0.3,
        start=date(2026, 1, 5),
        out=tmp_path / "out",
        no_progress=True,
        stdout=out,
    )
    text = out.getvalue()
    assert "replay of scored.csv.gz" in text and "flag_threshold" in text
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"weekly.csv", "weekly.json", "curves.png"}


def test_replay_command__missing_file__command_error() -> None:
    with pytest.raises(CommandError, match="no such file"):
        call_command("replay", csv="nowhere.csv", label_col="y", score_col="s", threshold=0.5)


@pytest.mark.django_db(transaction=False)
def test_replay__fraud_thresholds_too_low__dismissals_fall_misses_within_10_percent(run_replay: Any) -> None:
    """The issue's target on the shared fraud data set (simulated card transactions): a logistic regression on
    the handbook's 15 features trained on 6 weeks, 6 weeks replayed with the flag threshold far too low."""
    path = data_file("fraud_fdh", "fdh_transactions_10pct_customers.csv.gz")
    table = run_replay(
        ReplaySpec(
            csv=path,
            label_col="TX_FRAUD",
            time_col="TX_DATETIME",
            feature_cols=tuple(FRAUD_FEATURES),
            train_periods=6,
            weeks=6,
            threshold=0.005,
            label_noise=0.0,  # reviewers who never slip; the next test has them slip
        )
    )
    changed = next(i for i, row in enumerate(table) if row["accepted"])
    rates = [row["dismissalRate"] for row in table[changed:]]
    # Every tuned week's dismissals are below every week before the change. (The loop moves little here: a pass
    # is reviewed one time in ten, so the frauds it lets through are hardly seen, the reference is near zero and
    # the miss budget allows about one real case: the first step spends it.)
    assert max(rates) < min(row["dismissalRate"] for row in table[:changed]), rates
    assert rates[-1] < table[0]["dismissalRate"]
    # Misses against the same cases under the initial threshold (the label is the truth), over the tuned weeks.
    tuned = table[changed:]
    misses = sum(r["trueMisses"] for r in tuned)
    untuned = sum(r["initialMisses"] for r in tuned)
    assert misses <= 1.10 * untuned, (misses, untuned)


@pytest.mark.django_db(transaction=False)
def test_replay__noisy_reviewers_fraud_model__misses_within_the_tolerance_of_the_untuned_agent(
    run_replay: Any,
) -> None:
    """The issue's replay: a fraud model that weighs the rare class up (its scores run high), the flag threshold
    at 0.9, 2 % of passes sampled for review and reviewers who slip on 3 % of what they answer. Each sampled slip
    weighs 50; counted as misses, they made every rise look cheap and the old loop took the threshold to 0.998,
    missing 80 % more frauds. Real misses, measured beyond the slips, may rise by 10 % at most."""
    path = data_file("fraud_fdh", "fdh_transactions_10pct_customers.csv.gz")
    table = run_replay(
        ReplaySpec(
            csv=path,
            label_col="TX_FRAUD",
            time_col="TX_DATETIME",
            feature_cols=tuple(FRAUD_FEATURES),
            class_weight="balanced",
            train_periods=6,
            weeks=6,
            threshold=0.9,
            sample_rate=0.02,
            label_noise=0.03,
        )
    )
    changed = [i for i, row in enumerate(table) if row["accepted"]]
    tuned = table[changed[0] :] if changed else table
    misses = sum(r["trueMisses"] for r in tuned)
    untuned = sum(r["initialMisses"] for r in tuned)
    positives = sum(r["positives"] for r in tuned)
    allowed = untuned + max(rule("MISS_TOLERANCE") * untuned, rule("MISS_BUDGET_SLACK") * positives)
    assert misses <= allowed, (misses, untuned, [r["thresholds"] for r in table])
