"""Reads for the tuner: the window's counts, histograms and trends computed in the database (aggregate queries,
so memory does not grow with the window), bounded samples for clustering, and evidence look-ups."""

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from django.db.models import Case, CharField, Count, F, FloatField, Min, Q, QuerySet, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Floor, Mod, TruncWeek

from auditlog.models import Decision, ReviewReason
from auditlog.selectors import rule_filter
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition
from tuner.analysis import BINS, ReplayData, WeekStats
from tuner.clusters import cluster_as_dict, cluster_sentence, cluster_trends
from tuner.models import Cluster, MissReference, Proposal, TunerRun


@dataclass(frozen=True)
class Window:
    cycle: date
    start: datetime
    end: datetime


def cycle_window(*, agent: Agent, now: datetime) -> Window:
    """The cycle is the Monday of ``now``'s ISO week in the agent's timezone; the window is the
    ``agent.window_weeks`` weeks before ``now``."""
    local = now.astimezone(zoneinfo.ZoneInfo(agent.timezone or "UTC"))
    cycle = local.date() - timedelta(days=local.weekday())
    return Window(cycle=cycle, start=now - timedelta(weeks=agent.window_weeks or 4), end=now)


def label_expression(actions: list[str]) -> Case:
    """``auditlog.labels.effective_label`` in SQL: modify counts as escalate when stronger, dismiss when weaker."""
    whens = [When(response_action__in=["approve", "dismiss", "escalate"], then=F("response_action"))]
    for i, taken in enumerate(actions):
        for j, modified in enumerate(actions):
            label = "escalate" if j > i else "dismiss" if j < i else "approve"
            whens.append(
                When(response_action="modify", action=taken, modified_action=modified, then=Value(label)),
            )
    return Case(*whens, default=Value("dismiss"), output_field=CharField())


def window_decisions(*, agent: Agent, window: Window) -> QuerySet[Decision]:
    return Decision.objects.filter(agent=agent, timestamp__gte=window.start, timestamp__lt=window.end)


@dataclass(frozen=True)
class WindowCounts:
    decisions: int
    queued: int
    responded: int
    queued_responded: int
    by_response: dict[str, int]
    by_label: dict[str, int]
    first_response_at: datetime | None  # the earliest decision (by its timestamp) that has a response
    end: datetime  # the window's end: the cycle's moment
    tz: zoneinfo.ZoneInfo  # the agent's timezone, whose calendar days are counted
    by_threshold: dict[str, dict[str, int]]
    weeks: list[WeekStats]

    @property
    def response_rate(self) -> float | None:
        return self.queued_responded / self.queued if self.queued else None

    @property
    def response_days(self) -> float:
        """Calendar days (in the agent's timezone) of decisions the window holds since the first one with a
        response, by decision time, up to the cycle's day. Responses lag their decisions by a day or two, so the
        last days are counted although their answers are still coming: an agent that starts on a Monday has 14
        days at the cycle two Mondays later, whatever the hour it started."""
        if self.first_response_at is None:
            return 0.0
        first = self.first_response_at.astimezone(self.tz).date()
        return float(max(0, (self.end.astimezone(self.tz).date() - first).days))


def window_counts(*, agent: Agent, window: Window) -> WindowCounts:
    """Phase 1: counts per response, per threshold and per week, in three aggregate queries."""
    qs = window_decisions(agent=agent, window=window)
    totals = qs.aggregate(
        n_decisions=Count("seq"),
        n_queued=Count("seq", filter=Q(queued=True)),
        n_responded=Count("seq", filter=Q(response_action__isnull=False)),
        n_queued_responded=Count("seq", filter=Q(queued=True, response_action__isnull=False)),
        first=Min("timestamp", filter=Q(response_action__isnull=False)),
    )
    by_response: dict[str, int] = {"approve": 0, "dismiss": 0, "escalate": 0, "modify": 0}
    by_threshold: dict[str, dict[str, int]] = {}
    rows = (
        qs.filter(response_action__isnull=False)
        .values("threshold_name", "response_action")
        .annotate(n=Count("seq"))
        .order_by()
    )
    for row in rows:
        response = str(row["response_action"])
        by_response[response] = by_response.get(response, 0) + row["n"]
        by_threshold.setdefault(row["threshold_name"], {})[response] = row["n"]
    by_label = {"approve": 0, "dismiss": 0, "escalate": 0}
    label_rows = (
        qs.filter(response_action__isnull=False)
        .annotate(label=label_expression(list(agent.actions)))
        .values("label")
        .annotate(n=Count("seq"))
        .order_by()
    )
    for label_row in label_rows:
        by_label[str(label_row["label"])] = label_row["n"]
    tz = zoneinfo.ZoneInfo(agent.timezone or "UTC")
    weekly: dict[str, dict[str, int]] = {}
    week_rows = (
        qs.annotate(week=TruncWeek("timestamp", tzinfo=tz))
        .values("week")
        .annotate(
            n_decisions=Count("seq"),
            n_queued=Count("seq", filter=Q(queued=True)),
            n_responses=Count("seq", filter=Q(response_action__isnull=False)),
            n_queued_responses=Count("seq", filter=Q(queued=True, response_action__isnull=False)),
            n_approve=Count("seq", filter=Q(response_action="approve")),
            n_dismiss=Count("seq", filter=Q(response_action="dismiss")),
            n_escalate=Count("seq", filter=Q(response_action="escalate")),
            n_modify=Count("seq", filter=Q(response_action="modify")),
        )
        .order_by("week")
    )
    for week_row in week_rows:
        values: dict[str, Any] = dict(week_row)
        week = values.pop("week")
        key = week.date().isoformat() if hasattr(week, "date") else str(week)
        weekly[key] = {k[2:]: int(v) for k, v in values.items()}
    weeks = [WeekStats(week_start=k, **v) for k, v in sorted(weekly.items())]
    return WindowCounts(
        decisions=totals["n_decisions"],
        queued=totals["n_queued"],
        responded=totals["n_responded"],
        queued_responded=totals["n_queued_responded"],
        by_response=by_response,
        by_label=by_label,
        first_response_at=totals["first"],
        end=window.end,
        tz=tz,
        by_threshold=by_threshold,
        weeks=weeks,
    )


Histograms = dict[tuple[str, str, bool], np.ndarray]


def _histograms(qs: QuerySet[Decision], *, agent: Agent, score: Any) -> tuple[Histograms, int]:
    """``qs`` counted per (action, effective label, sampled) and bin of ``score``; and how many had no score."""
    rows = (
        qs.annotate(label=label_expression(list(agent.actions)), bin=Floor(score * BINS))
        .values("action", "label", "review_reason", "bin")
        .annotate(n=Count("seq"))
        .order_by()
    )
    out: Histograms = {}
    unscored = 0
    for row in rows:
        if row["bin"] is None:
            unscored += row["n"]
            continue
        key = (row["action"], row["label"], row["review_reason"] == ReviewReason.SAMPLED)
        hist = out.setdefault(key, np.zeros(BINS + 1))
        hist[min(BINS, max(0, int(row["bin"])))] += row["n"]
    return out, unscored


# ------------------------------------------------------------------------------------ a rule-based agent's rules


def rule_score(definition: ThresholdDefinition) -> Any:
    """The score a threshold's rule compares with its value: the ``score_feature`` of the decision's features
    when set (a JSON key read as a number, on SQLite and PostgreSQL alike), else the decision's confidence."""
    if definition.score_feature:
        return Cast(KeyTextTransform(definition.score_feature, "features"), FloatField())
    return F("confidence")


@dataclass(frozen=True)
class RulePopulations:
    """Where a rule-based agent's threshold is judged: ``gated``, the decisions at its action that its rule fired
    alone (no other rule for the same or a stronger action fired with it: moving this threshold changes them,
    and nothing else at its action); ``below``, the decisions one action below, which a lowering would bring to
    its action when their score for this rule reaches the new value."""

    action: str
    below_action: str
    gated: Q
    below: Q
    score: Any


def rule_populations(
    *, agent: Agent, definition: ThresholdDefinition, definitions: dict[str, ThresholdDefinition] | None = None
) -> RulePopulations | None:
    """The populations of ``definition`` for a rule-based agent; None for a threshold that gates the weakest
    action (or an unknown one)."""
    actions = list(agent.actions)
    if definition.action not in actions or actions.index(definition.action) == 0:
        return None
    rank = actions.index(definition.action)
    if definitions is None:
        definitions = {d.name: d for d in ThresholdDefinition.objects.filter(agent=agent)}
    own = definition.rule_name
    others = sorted(
        {
            d.rule_name
            for d in definitions.values()
            if d.name != definition.name
            and d.rule_name != own
            and d.action in actions
            and actions.index(d.action) >= rank
        }
    )
    gated = Q(action=definition.action) & rule_filter(own)
    for other in others:
        gated &= ~rule_filter(other)
    below_action = actions[rank - 1]
    return RulePopulations(
        action=definition.action,
        below_action=below_action,
        gated=gated,
        below=Q(action=below_action),
        score=rule_score(definition),
    )


@dataclass(frozen=True)
class ThresholdHistograms:
    """Per threshold, the histograms its replay reads (``replay_data``), and the responded decisions of its
    populations that carry no score (no confidence, or no ``score_feature``) and so cannot be replayed."""

    by_threshold: dict[str, Histograms]
    unscored: dict[str, int]


def threshold_histograms(
    *, agent: Agent, window: Window, definitions: dict[str, ThresholdDefinition]
) -> ThresholdHistograms:
    """What each threshold is replayed on. A scored agent's thresholds share one confidence histogram. A
    rule-based agent's threshold gets its own: its rule's populations (``rule_populations``) by its rule's
    score, so two rules that gate one action are judged each on its own hits (one query per threshold)."""
    responded = window_decisions(agent=agent, window=window).filter(response_action__isnull=False)
    if not agent.rule_based:
        shared, unscored = _histograms(responded, agent=agent, score=F("confidence"))
        return ThresholdHistograms(
            {name: shared for name in definitions}, {name: unscored for name in definitions} if unscored else {}
        )
    by_threshold: dict[str, Histograms] = {}
    missing: dict[str, int] = {}
    for name, definition in sorted(definitions.items()):
        populations = rule_populations(agent=agent, definition=definition, definitions=definitions)
        if populations is None:
            continue
        qs = responded.filter(populations.gated | populations.below)
        by_threshold[name], unscored = _histograms(qs, agent=agent, score=populations.score)
        if unscored:
            missing[name] = unscored
    return ThresholdHistograms(by_threshold, missing)


def replay_data(*, agent: Agent, definition: ThresholdDefinition, histograms: Histograms) -> ReplayData | None:
    """The threshold's two populations: decisions at the action it gates, and those one action below."""
    actions = list(agent.actions)
    if definition.action not in actions or actions.index(definition.action) == 0:
        return None
    below = actions[actions.index(definition.action) - 1]
    rate = agent.review_sample_rate if agent.review_sample_rate > 0 else 1.0
    # Rows: at the gated action (all queued, weight 1); one below, queued (weight 1) and sampled (1 / rate).
    data = ReplayData.empty((1.0, 1.0, 1.0 / rate), gated=(True, False, False))
    for (action, label, sampled), hist in histograms.items():
        if action == definition.action:
            row, target = 0, data.negatives if label == "dismiss" else data.positives
        elif action == below:
            row, target = 2 if sampled else 1, data.positives if label == "escalate" else data.negatives
        else:
            continue
        target[row] += hist
    return data


def evidence_queryset(
    *,
    agent: Agent,
    window: Window,
    definition: ThresholdDefinition,
    kind: str,
    low: float,
    high: float,
    definitions: dict[str, ThresholdDefinition] | None = None,
) -> QuerySet[Decision]:
    """Decisions that support moving ``definition`` across [low, high): dismissals at its action (for an
    increase) or escalations one action below (for a decrease), with confidence in the band. For a rule-based
    agent, only the threshold's own populations (``rule_populations``), by its rule's score: a dismissal that
    another rule fired is never evidence against this one."""
    actions = list(agent.actions)
    rank = actions.index(definition.action)
    action = definition.action if kind == "dismiss" else actions[max(0, rank - 1)]
    qs = window_decisions(agent=agent, window=window).filter(response_action__isnull=False, action=action)
    populations = (
        rule_populations(agent=agent, definition=definition, definitions=definitions) if agent.rule_based else None
    )
    if populations is None:
        qs = qs.filter(confidence__gte=low, confidence__lt=high)
    else:
        qs = (
            qs.filter(populations.gated if kind == "dismiss" else populations.below)
            .annotate(rule_score=populations.score)
            .filter(rule_score__gte=low, rule_score__lt=high)
        )
    return qs.annotate(label=label_expression(actions)).filter(label=kind)


def evidence_entries(
    *,
    agent: Agent,
    window: Window,
    definition: ThresholdDefinition,
    kind: str,
    low: float,
    high: float,
    limit: int,
    definitions: dict[str, ThresholdDefinition] | None = None,
) -> tuple[int, list[str]]:
    qs = evidence_queryset(
        agent=agent, window=window, definition=definition, kind=kind, low=low, high=high, definitions=definitions
    )
    count = qs.count()
    ids = list(qs.order_by("-timestamp", "-seq").values_list("entry_id", flat=True)[:limit])
    return count, ids


def entries_gated(
    *,
    agent: Agent,
    window: Window,
    definition: ThresholdDefinition,
    kind: str,
    low: float,
    high: float,
    entry_ids: list[str],
) -> set[str]:
    """Which of ``entry_ids`` are evidence for moving ``definition`` across [low, high) (``evidence_queryset``)."""
    qs = evidence_queryset(agent=agent, window=window, definition=definition, kind=kind, low=low, high=high)
    return set(qs.filter(entry_id__in=entry_ids[:200]).values_list("entry_id", flat=True))


def entries_in_window(*, agent: Agent, window: Window, entry_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The cited entries that exist in the window, with their action, effective label and confidence."""
    rows = (
        window_decisions(agent=agent, window=window)
        .filter(entry_id__in=entry_ids[:200])
        .annotate(label=label_expression(list(agent.actions)))
        .values("entry_id", "action", "label", "confidence", "response_action")
    )
    return {r["entry_id"]: dict(r) for r in rows if r["response_action"] is not None}


@dataclass(frozen=True)
class ClusterRows:
    entry_ids: list[str]
    confidences: list[float | None]  # None: a rule-based agent's decision logged without one
    thresholds: list[str]
    features: list[dict[str, Any]]
    rules: list[list[str]]
    total: int  # rows of this kind in the window (the sample's scale)


def cluster_rows(*, agent: Agent, window: Window, label: str, limit: int) -> ClusterRows:
    """Up to ``limit`` responded decisions with this effective label, a deterministic every-k-th sample when
    there are more (so memory stays bounded)."""
    qs = (
        window_decisions(agent=agent, window=window)
        .filter(response_action__isnull=False)
        .annotate(label=label_expression(list(agent.actions)))
        .filter(label=label)
    )
    total = qs.count()
    if total > limit:
        step = -(-total // limit)
        qs = qs.annotate(pick=Mod(F("seq"), step)).filter(pick=0)
    columns = ("entry_id", "confidence", "threshold_name", "features", "matched_rules")
    rows = list(qs.order_by("timestamp", "seq").values_list(*columns)[:limit])
    return ClusterRows(
        entry_ids=[r[0] for r in rows],
        confidences=[None if r[1] is None else float(r[1]) for r in rows],
        thresholds=[r[2] for r in rows],
        features=[r[3] or {} for r in rows],
        rules=[list(r[4] or []) for r in rows],
        total=total,
    )


def rolled_back_thresholds(*, agent: Agent, since: datetime | None, now: datetime) -> set[str]:
    """Thresholds whose proposal was rolled back since the previous cycle."""
    qs = Proposal.objects.filter(agent=agent, status=Proposal.Status.ROLLED_BACK)
    if since is not None:
        qs = qs.filter(Q(rolled_back_at__gte=since) | Q(rolled_back_at__isnull=True, decided_at__gte=since))
    return set(qs.values_list("threshold_name", flat=True))


def previous_run(*, agent: Agent, cycle: date) -> TunerRun | None:
    return TunerRun.objects.filter(agent=agent, cycle__lt=cycle).order_by("-cycle").first()


def tuner_runs_list(*, agent: Agent) -> QuerySet[TunerRun]:
    return TunerRun.objects.filter(agent=agent).select_related("requested_by").order_by("-cycle", "-created_at")


# ------------------------------------------------------------------------------------ changes and the reference

CHANGE_SOURCES = (ConfigVersion.Source.PROPOSAL, ConfigVersion.Source.MANUAL)


def first_change(*, agent: Agent, before: datetime) -> ConfigVersion | None:
    """The first accepted change of the agent's config (a proposal accepted or modified, or a manual change)."""
    return (
        ConfigVersion.objects.filter(agent=agent, source__in=CHANGE_SOURCES, activated_at__lt=before)
        .order_by("activated_at", "number")
        .first()
    )


def first_rise_in_window(*, agent: Agent, window: Window) -> datetime | None:
    """When an accepted change first raised a threshold inside the window (for the creep test), or None."""
    versions = list(
        ConfigVersion.objects.filter(agent=agent).order_by("number").only("number", "values", "source", "activated_at")
    )
    for previous, version in zip(versions, versions[1:], strict=False):
        if not window.start <= version.activated_at < window.end or version.source not in CHANGE_SOURCES:
            continue
        if any(float(v) > float(previous.values.get(name, v)) + 1e-12 for name, v in version.values.items()):
            return version.activated_at
    return None


def week_key(*, agent: Agent, at: datetime) -> str:
    """The ISO week of ``at`` in the agent's timezone, as ``WeekStats.week_start`` spells it (its Monday)."""
    local = at.astimezone(zoneinfo.ZoneInfo(agent.timezone or "UTC")).date()
    return (local - timedelta(days=local.weekday())).isoformat()


def values_at(*, agent: Agent, at: datetime) -> dict[str, float]:
    """The threshold values live just before ``at``."""
    version = (
        ConfigVersion.objects.filter(agent=agent, activated_at__lt=at).order_by("-activated_at", "-number").first()
    )
    if version is None:
        version = ConfigVersion.objects.filter(agent=agent).order_by("number").first()
    return {k: float(v) for k, v in (version.values if version is not None else {}).items()}


def miss_reference_get(*, agent: Agent) -> MissReference | None:
    return MissReference.objects.filter(agent=agent).select_related("set_by").first()


def miss_ledger(*, agent: Agent, since: datetime, until: datetime) -> dict[str, float]:
    """Per threshold, the real misses the changes accepted since ``since`` were replayed to add, each as a share of
    the real cases of the window it was measured on. Only material losses count (the risk flag's test: beyond
    what the replay can tell from noise); rolled-back changes no longer count."""
    ledger: dict[str, float] = {}
    accepted = Proposal.objects.filter(
        agent=agent,
        status__in=[Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED],
        decided_at__gte=since,
        decided_at__lt=until,
    ).values_list("threshold_name", "impact")
    for name, impact in accepted:
        misses = (impact or {}).get("misses") or {}
        added, real = misses.get("change"), (impact or {}).get("realCases")
        material = "material" in ((impact or {}).get("riskReasons") or [])
        if material and isinstance(added, int | float) and isinstance(real, int | float) and added > 0 and real > 0:
            ledger[name] = ledger.get(name, 0.0) + float(added) / float(real)
    return ledger


# ------------------------------------------------------------------------------------------------ clusters


def run_clusters(*, run: TunerRun) -> list[dict[str, Any]]:
    """A run's stored clusters in the shape ``tuner.services.clusters_find`` returns, largest first."""
    return [cluster_as_dict(c) for c in Cluster.objects.filter(run=run).order_by("-size", "kind", "pk")]


def latest_done_run(*, agent: Agent) -> TunerRun | None:
    return TunerRun.objects.filter(agent=agent, status=TunerRun.Status.DONE).order_by("-cycle", "-created_at").first()


@dataclass
class ClusterTrends:
    """The latest done cycle's clusters, each with its trend against the done cycle before (tuner.clusters)."""

    run: TunerRun | None
    previous: TunerRun | None
    clusters: list[dict[str, Any]]
    gone: list[dict[str, Any]]


def cluster_trends_latest(*, agent: Agent) -> ClusterTrends:
    run = latest_done_run(agent=agent)
    if run is None:
        return ClusterTrends(run=None, previous=None, clusters=[], gone=[])
    previous = (
        TunerRun.objects.filter(agent=agent, status=TunerRun.Status.DONE, cycle__lt=run.cycle)
        .order_by("-cycle", "-created_at")
        .first()
    )
    before = run_clusters(run=previous) if previous is not None else []
    clusters, gone = cluster_trends(run_clusters(run=run), before)
    for c in [*clusters, *gone]:
        c["sentence"] = cluster_sentence(c)
    return ClusterTrends(run=run, previous=previous, clusters=clusters, gone=gone)
