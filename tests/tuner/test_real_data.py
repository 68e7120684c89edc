"""The tuner on real data: card transactions of the Fraud Detection Handbook, scored by a logistic regression
trained on earlier weeks, replayed as an agent's decisions with reviewers answering from the true labels."""

import csv
import gzip
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.conftest import data_file
from tests.factories import NOW, make_agent
from tests.tuner.helpers import log_rows, output
from tuner.generators import StatisticalGenerator
from tuner.models import Proposal
from tuner.services import tuner_cycle_run

pytestmark = pytest.mark.django_db

FEATURES = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "TERMINAL_ID_NB_TX_7DAY_WINDOW",
    "TERMINAL_ID_RISK_7DAY_WINDOW",
    "TERMINAL_ID_RISK_30DAY_WINDOW",
]
TRAIN_WEEKS, SCORE_WEEKS = range(10, 14), range(14, 18)
LEGIT_KEEP = 10  # every 10th legitimate transaction is kept (all frauds are), to keep the test quick


@lru_cache(maxsize=1)
def scored() -> list[dict[str, Any]]:
    """Weeks 14-17 scored by a model trained on weeks 10-13, moved so that week 17 ends at NOW."""
    path = data_file("fraud_fdh", "fdh_transactions_10pct_customers.csv.gz")
    with gzip.open(path, "rt", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if TRAIN_WEEKS.start <= int(r["week"]) < SCORE_WEEKS.stop]
    x = np.array([[float(r[f]) for f in FEATURES] for r in rows])
    y = np.array([int(r["TX_FRAUD"]) for r in rows])
    train = np.array([int(r["week"]) in TRAIN_WEEKS for r in rows])
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit((x[train] - mean) / std, y[train])
    scores = model.predict_proba((x[~train] - mean) / std)[:, 1]
    test_rows = [r for r, t in zip(rows, train, strict=True) if not t]
    end = datetime.fromisoformat(test_rows[-1]["TX_DATETIME"])
    out = []
    for i, (row, score, fraud) in enumerate(zip(test_rows, scores, y[~train], strict=True)):
        if not fraud and i % LEGIT_KEEP:
            continue
        at = NOW - timedelta(hours=2) - (end - datetime.fromisoformat(row["TX_DATETIME"]))
        out.append(
            {
                "id": f"tx-{row['TRANSACTION_ID']}",
                "confidence": round(float(score), 4),
                "at": at,
                "fraud": bool(fraud),
                "features": {f: float(row[f]) for f in FEATURES[:6]},
            }
        )
    return out


def reviewed(rows: list[dict[str, Any]], gates: list[tuple[float, str]], prefix: str) -> list[dict[str, Any]]:
    """The agent takes the strongest action whose threshold the score reaches (``gates`` weakest first, the
    first with threshold 0). Reviewers answer from the truth: a legitimate transaction held up by any action is
    dismissed; a fraud that was not blocked is escalated."""
    out = []
    strongest = gates[-1][1]
    for row in rows:
        action = [name for value, name in gates if row["confidence"] >= value][-1]
        if row["fraud"]:
            response = "approve" if action == strongest else "escalate"
        else:
            response = "approve" if action == gates[0][1] else "dismiss"
        out.append({**row, "id": f"{prefix}-{row['id']}", "action": action, "response": response})
    return out


def test_real_data__threshold_set_too_low__high_confidence_increase_within_the_miss_tolerance() -> None:
    agent, _ = make_agent(
        "cards-low", actions=["allow", "flag"], thresholds=[{"name": "fraud_flag", "value": 0.3, "action": "flag"}]
    )
    log_rows(agent, reviewed(scored(), [(0.0, "allow"), (0.3, "flag")], "low"))
    run = tuner_cycle_run(agent=agent, now=NOW, generator=StatisticalGenerator())

    assert len(output(run)["proposals"]) == 1, (output(run), run.notes)
    (out,) = output(run)["proposals"]
    assert (out["thresholdName"], out["direction"], out["confidence"]) == ("fraud_flag", "increase", "high"), (
        out,
        Proposal.objects.get(run=run).impact,
    )
    assert 0.3 < out["proposedValue"] <= 0.36
    impact = Proposal.objects.get(run=run).impact
    assert impact["falseAlarms"]["change"] < 0 and impact["falseAlarms"]["high"] < 0
    # Within the miss rules: at most 10 % more real misses than today's (or 0.3 % of the real cases, or one case:
    # MISS_BUDGET_SLACK and MISS_BUDGET_SLACK_CASES), and at most 10 % of the cases reviewers confirmed today.
    room = max(0.10 * impact["missesToday"], 0.003 * impact["realCases"], 1.0)
    assert impact["misses"]["change"] <= room + 1e-9 and impact["confirmedLostShare"] <= 0.10
    assert out["evidenceCount"] >= 5 and len(out["sampleEntryIds"]) >= 5


def test_real_data__block_threshold_too_high_with_reviewers_escalating_missed_frauds__decrease() -> None:
    agent, _ = make_agent(
        "cards-high",
        actions=["allow", "review", "block"],
        thresholds=[
            {"name": "review_threshold", "value": 0.3, "action": "review"},
            {"name": "block_threshold", "value": 0.95, "action": "block"},
        ],
        review_sample_rate=0.5,
    )
    log_rows(agent, reviewed(scored(), [(0.0, "allow"), (0.3, "review"), (0.95, "block")], "high"))
    run = tuner_cycle_run(agent=agent, now=NOW, generator=StatisticalGenerator())

    by_name = {p["thresholdName"]: p for p in output(run)["proposals"]}
    assert "block_threshold" in by_name, (output(run), run.notes)
    out = by_name["block_threshold"]
    assert out["direction"] == "decrease" and 0.76 <= out["proposedValue"] < 0.95
    impact = Proposal.objects.get(run=run, threshold_name="block_threshold").impact
    assert impact["misses"]["change"] < 0 and impact["misses"]["high"] < 0
    assert out["confidence"] in {"medium", "high"}
    assert "false alarm" in out["riskAssessment"]
