"""Which clusters a proposal addresses, and how a cycle's clusters moved since the cycle before.

Pure: the clusters are plain dicts in the shape ``tuner.services.clusters_find`` returns (``cluster_as_dict``
rebuilds one from a stored ``Cluster`` row). Nothing here reads the database.

A proposal's band is where its move changes decisions: raising a threshold from ``current`` to ``proposed`` stops
its action firing for confidence in [current, proposed), so it answers the dismissals there; lowering it starts
its action firing in [proposed, current) for decisions one action below, so it answers the escalations there.
A cluster *addresses* a proposal when it is of that kind (dismissals for an increase, escalations for a
decrease), some of its members were logged under a threshold whose decisions the band holds, and its confidence
range overlaps the band.

Between two cycles a cluster is the *same* cluster when its kind is the same and either its label is the same or
the features that set it apart (for a rule-based agent: its matched-rule combination) overlap by at least half
(Jaccard). Its trend is then ``growing`` or ``shrinking`` when its size moved by more than a tenth (and more than
one decision), ``steady`` otherwise; a cluster with no match is ``new``, and a previous one left unmatched is gone.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ADDRESSED_KEPT = 10  # clusters stored on a proposal (the approval page shows the first 3)
MATCH_SIMILARITY = 0.5
STEADY_FRACTION = 0.1

KIND_WORDS = {"dismiss": ("dismissal", "dismissals"), "escalate": ("escalation", "escalations")}


def proposal_band(*, direction: str, current: float, proposed: float) -> tuple[float, float, str]:
    """The band [low, high) of confidence the move affects, and the kind of response it answers there."""
    if direction == "increase":
        return min(current, proposed), max(current, proposed), "dismiss"
    return min(current, proposed), max(current, proposed), "escalate"


def band_thresholds(
    *,
    threshold_name: str,
    direction: str,
    gates: Mapping[str, str],
    values: Mapping[str, float],
    actions: Sequence[str],
) -> set[str]:
    """The thresholds the band's decisions are logged under (``decision.thresholdName``, as the decision log
    fills it in): the threshold itself for an increase (decisions at its action); for a decrease, the thresholds
    gating the action one below, or the lowest threshold when that action is the weakest (contract, decision body)."""
    if direction == "increase":
        return {threshold_name}
    action = gates.get(threshold_name)
    if action is None or action not in actions:
        return {threshold_name}
    rank = list(actions).index(action)
    if rank == 0:
        return {threshold_name}
    below = actions[rank - 1]
    gating = {name for name, gated in gates.items() if gated == below}
    if gating:
        return gating
    known = {n: v for n, v in values.items() if n in gates}
    return {min(known, key=lambda n: (known[n], n))} if known else {threshold_name}


def _range(cluster: Mapping[str, Any]) -> tuple[float, float] | None:
    rng = cluster.get("confidenceRange") or []
    if len(rng) != 2 or not all(isinstance(x, int | float) for x in rng):
        return None
    return float(rng[0]), float(rng[1])


def _addresses(cluster: Mapping[str, Any], *, low: float, high: float, kind: str, thresholds: set[str]) -> bool:
    if cluster.get("kind") != kind:
        return False
    if not thresholds & set(cluster.get("thresholds") or []):
        return False
    # A cluster without a confidence range (members without a confidence) may lie anywhere.
    lo, hi = _range(cluster) or (0.0, 1.0)
    # Overlap of [lo, hi] with [low, high): some member may lie in the band.
    return lo < high and hi >= low


def clusters_addressed(
    clusters: Iterable[Mapping[str, Any]],
    *,
    direction: str,
    current: float,
    proposed: float,
    thresholds: set[str],
    keep: int = ADDRESSED_KEPT,
) -> list[dict[str, Any]]:
    """The clusters the proposal addresses, largest first, in the shape a proposal stores them."""
    low, high, kind = proposal_band(direction=direction, current=current, proposed=proposed)
    chosen = [c for c in clusters if _addresses(c, low=low, high=high, kind=kind, thresholds=thresholds)]
    chosen.sort(key=lambda c: (-int(c.get("size") or 0), str(c.get("label") or "")))
    return [cluster_summary(c) for c in chosen[:keep]]


def cluster_summary(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """What a proposal keeps of a cluster."""
    return {
        "kind": cluster["kind"],
        "label": cluster.get("label") or "",
        "size": int(cluster.get("size") or 0),
        "share": cluster.get("share"),
        "confidenceRange": list(cluster.get("confidenceRange") or []),
        "distinguishingFeatures": list(cluster.get("distinguishingFeatures") or []),
        "rules": list(cluster.get("rules") or []),
        "sampleEntryIds": [str(i) for i in cluster.get("sampleEntryIds") or []],
    }


def cluster_as_dict(row: Any) -> dict[str, Any]:
    """A stored ``tuner.models.Cluster`` in the shape ``clusters_find`` returns."""
    return {
        "kind": row.kind,
        "label": row.label,
        "size": row.size,
        "share": row.share,
        "thresholds": list(row.thresholds or []),
        "confidenceRange": [row.confidence_min, row.confidence_max],
        "distinguishingFeatures": list(row.distinguishing_features or []),
        "rules": list(row.rules or []),
        "sampleEntryIds": list(row.sample_entry_ids or []),
    }


def cluster_sentence(cluster: Mapping[str, Any]) -> str:
    """One plain sentence: '38 dismissals at 0.40-0.48 confidence: amount_score high, night high'."""
    size = int(cluster.get("size") or 0)
    one, many = KIND_WORDS.get(str(cluster.get("kind")), ("decision", "decisions"))
    text = f"{size} {one if size == 1 else many}"
    rng = _range(cluster)
    if rng is not None:
        lo, hi = rng
        text += f" at {lo:.2f} confidence" if f"{lo:.2f}" == f"{hi:.2f}" else f" at {lo:.2f}-{hi:.2f} confidence"
    label = str(cluster.get("label") or "")
    generic = label == f"{cluster.get('kind')} cluster"
    return f"{text}: {label}" if label and not generic else text


def _signature(cluster: Mapping[str, Any]) -> set[str]:
    if cluster.get("rules"):
        return {f"rule:{r}" for r in cluster["rules"]}
    return {
        f"{f['feature']}:{'high' if float(f.get('effect') or 0) > 0 else 'low'}"
        for f in cluster.get("distinguishingFeatures") or []
        if isinstance(f, Mapping) and "feature" in f
    }


def cluster_similarity(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """1.0 for the same kind and label; otherwise the Jaccard overlap of their signatures (0 across kinds)."""
    if a.get("kind") != b.get("kind"):
        return 0.0
    if (a.get("label") or "") == (b.get("label") or ""):
        return 1.0
    sa, sb = _signature(a), _signature(b)
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def trend_word(size: int, previous: int | None) -> str:
    if previous is None:
        return "new"
    change = size - previous
    if abs(change) <= max(1.0, STEADY_FRACTION * previous):
        return "steady"
    return "growing" if change > 0 else "shrinking"


def cluster_trends(
    current: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each current cluster with ``trend``, ``previousSize`` and ``change`` against its match in the previous
    cycle (largest first, each previous cluster matched at most once), and the previous clusters left unmatched."""
    pool = list(range(len(previous)))
    out: list[dict[str, Any]] = []
    for cluster in sorted(current, key=lambda c: -int(c.get("size") or 0)):
        best, best_score = None, 0.0
        for j in pool:
            score = cluster_similarity(cluster, previous[j])
            if score >= MATCH_SIMILARITY and (
                score > best_score
                or (best is not None and score == best_score and previous[j]["size"] > previous[best]["size"])
            ):
                best, best_score = j, score
        size = int(cluster.get("size") or 0)
        before = None
        if best is not None:
            pool.remove(best)
            before = int(previous[best].get("size") or 0)
        out.append(
            {
                **cluster,
                "trend": trend_word(size, before),
                "previousSize": before,
                "change": None if before is None else size - before,
            }
        )
    gone = [dict(previous[j]) for j in pool]
    return out, gone
