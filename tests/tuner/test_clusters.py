"""tuner.clusters: which clusters a proposal addresses, and how clusters moved between two cycles (no database)."""

from typing import Any

from tuner.clusters import (
    band_thresholds,
    cluster_sentence,
    cluster_similarity,
    cluster_trends,
    clusters_addressed,
    proposal_band,
    trend_word,
)

ACTIONS = ["auto-resolve", "flag", "escalate"]
GATES = {"flag_threshold": "flag", "escalate_threshold": "escalate"}
VALUES = {"flag_threshold": 0.6, "escalate_threshold": 0.85}


def cluster(kind: str = "dismiss", lo: float = 0.6, hi: float = 0.68, **kw: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "label": kw.pop("label", "night high"),
        "size": kw.pop("size", 40),
        "share": kw.pop("share", 0.5),
        "thresholds": kw.pop("thresholds", ["flag_threshold"]),
        "confidenceRange": [lo, hi],
        "distinguishingFeatures": kw.pop("features", [{"feature": "night", "effect": 2.1}]),
        "rules": kw.pop("rules", []),
        "sampleEntryIds": kw.pop("samples", ["a", "b"]),
    }


def test_proposal_band__increase_answers_dismissals_decrease_escalations() -> None:
    assert proposal_band(direction="increase", current=0.6, proposed=0.7) == (0.6, 0.7, "dismiss")
    assert proposal_band(direction="decrease", current=0.85, proposed=0.75) == (0.75, 0.85, "escalate")


def test_band_thresholds__decrease__thresholds_of_the_action_below_or_the_lowest_for_the_weakest() -> None:
    kw: dict[str, Any] = {"gates": GATES, "values": VALUES, "actions": ACTIONS}
    assert band_thresholds(threshold_name="escalate_threshold", direction="increase", **kw) == {"escalate_threshold"}
    # Lowering escalate_threshold moves flag decisions (logged under flag_threshold) up to escalate.
    assert band_thresholds(threshold_name="escalate_threshold", direction="decrease", **kw) == {"flag_threshold"}
    # Lowering flag_threshold moves auto-resolve decisions, logged under the lowest threshold.
    assert band_thresholds(threshold_name="flag_threshold", direction="decrease", **kw) == {"flag_threshold"}


def test_clusters_addressed__increase__dismissal_clusters_overlapping_the_band_largest_first() -> None:
    inside = cluster(lo=0.61, hi=0.69, size=30, label="night high")
    straddling = cluster(lo=0.5, hi=0.62, size=50, label="amount high")
    below = cluster(lo=0.4, hi=0.59, size=90, label="below")
    at_top_edge = cluster(lo=0.7, hi=0.8, size=90, label="starts where the band ends")
    escalations = cluster("escalate", lo=0.6, hi=0.7, size=99, label="escalations")
    other_threshold = cluster(lo=0.6, hi=0.7, size=99, label="elsewhere", thresholds=["escalate_threshold"])

    got = clusters_addressed(
        [inside, straddling, below, at_top_edge, escalations, other_threshold],
        direction="increase",
        current=0.6,
        proposed=0.7,
        thresholds={"flag_threshold"},
    )

    assert [c["label"] for c in got] == ["amount high", "night high"]
    assert set(got[0]) == {
        "kind",
        "label",
        "size",
        "share",
        "confidenceRange",
        "distinguishingFeatures",
        "rules",
        "sampleEntryIds",
    }
    assert got[1]["distinguishingFeatures"] == [{"feature": "night", "effect": 2.1}]
    assert got[1]["sampleEntryIds"] == ["a", "b"]


def test_clusters_addressed__decrease__escalation_clusters_in_proposed_to_current() -> None:
    missed = cluster("escalate", lo=0.78, hi=0.84, label="missed", thresholds=["flag_threshold"])
    too_low = cluster("escalate", lo=0.6, hi=0.74, label="too low", thresholds=["flag_threshold"])
    dismissals = cluster("dismiss", lo=0.78, hi=0.84, label="dismissals", thresholds=["flag_threshold"])

    got = clusters_addressed(
        [missed, too_low, dismissals],
        direction="decrease",
        current=0.85,
        proposed=0.75,
        thresholds={"flag_threshold"},
    )

    assert [c["label"] for c in got] == ["missed"]


def test_cluster_sentence__size_kind_range_and_features() -> None:
    assert cluster_sentence(cluster(size=38, lo=0.4, hi=0.48, label="amount_score high, night high")) == (
        "38 dismissals at 0.40-0.48 confidence: amount_score high, night high"
    )
    assert cluster_sentence(cluster("escalate", size=1, lo=0.5, hi=0.5, label="escalate cluster")) == (
        "1 escalation at 0.50 confidence"
    )


def test_cluster_similarity__same_label_or_half_the_features_same_kind_only() -> None:
    a = cluster(
        label="night high, amount high",
        features=[{"feature": "night", "effect": 2}, {"feature": "amount", "effect": 1}],
    )
    reordered = cluster(
        label="amount high, night high",
        features=[{"feature": "amount", "effect": 1.5}, {"feature": "night", "effect": 1}],
    )
    flipped = cluster(label="night low", features=[{"feature": "night", "effect": -2}])
    assert cluster_similarity(a, reordered) == 1.0
    assert cluster_similarity(a, flipped) == 0.0
    assert cluster_similarity(a, {**a, "kind": "escalate"}) == 0.0
    assert (
        cluster_similarity(cluster(rules=["r1", "r2"], label="r1 + r2"), cluster(rules=["r1", "r2", "r3"], label="x"))
        > 0.5
    )


def test_trend_word__tolerance_of_a_tenth_and_one_decision() -> None:
    assert trend_word(10, None) == "new"
    assert trend_word(40, 30) == "growing"
    assert trend_word(20, 30) == "shrinking"
    assert (trend_word(32, 30), trend_word(3, 2)) == ("steady", "steady")


def test_cluster_trends__new_growing_shrinking_and_gone() -> None:
    previous = [
        cluster(label="night high", size=20),
        cluster("escalate", label="amount high", size=50, features=[{"feature": "amount", "effect": 1.2}]),
        cluster(label="weekend high", size=12, features=[{"feature": "weekend", "effect": 1.0}]),
    ]
    current = [
        cluster(label="night high", size=38),
        cluster(
            "escalate",
            label="amount high, confidence low",
            size=25,
            features=[{"feature": "amount", "effect": 1.1}, {"feature": "confidence", "effect": -0.9}],
        ),
        cluster(label="country low", size=9, features=[{"feature": "country", "effect": -1.0}]),
    ]

    got, gone = cluster_trends(current, previous)

    by_label = {c["label"]: (c["trend"], c["previousSize"], c["change"]) for c in got}
    assert by_label == {
        "night high": ("growing", 20, 18),
        "amount high, confidence low": ("shrinking", 50, -25),
        "country low": ("new", None, None),
    }
    assert [c["label"] for c in gone] == ["weekend high"]
