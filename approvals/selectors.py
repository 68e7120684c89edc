"""Reads for the approval view, the watchdog, the audit trail and the digest."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, Prefetch, Q, QuerySet

from approvals.exceptions import ProposalNotFound
from approvals.models import AuditEvent, VersionWatch
from auditlog.labels import ERROR_RESPONSE, effective_label
from auditlog.models import Decision, ReviewReason
from auditlog.render import entry_render
from auditlog.selectors import decision_read
from loopsite.compiled import Param, compiled, totals
from loopsite.exceptions import DomainError
from loopsite.rules import rule
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition
from thresholds.selectors import config_get_live
from tuner.clusters import cluster_sentence, proposal_band
from tuner.models import Proposal, ProposalApproval
from tuner.selectors import rule_score

SAMPLES_SHOWN = 5
CLUSTERS_SHOWN = 3
CLUSTER_SAMPLES_SHOWN = 4
CHART_BINS = 20


def _with_approvals(qs: QuerySet[Proposal]) -> QuerySet[Proposal]:
    return qs.prefetch_related(Prefetch("approvals", queryset=ProposalApproval.objects.select_related("approver")))


def proposal_get(*, proposal_id: int | str) -> Proposal:
    try:
        return _with_approvals(Proposal.objects.select_related("agent", "run", "created_by", "decided_by")).get(
            pk=proposal_id
        )
    except (Proposal.DoesNotExist, ValueError, TypeError):
        raise ProposalNotFound(f"no proposal {proposal_id}", field="id") from None


def proposal_evidence_ids(proposal: Proposal) -> list[str]:
    """The entry ids a proposal cites, in the order they were cited: what its audit rows link to."""
    return list(proposal.evidence.order_by("id").values_list("entry_id", flat=True))


def proposals_list(*, agent: Agent | None = None, status: str | None = None) -> QuerySet[Proposal]:
    qs = _with_approvals(Proposal.objects.select_related("agent", "run", "decided_by", "created_by"))
    if agent is not None:
        qs = qs.filter(agent=agent)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "rank", "-pk")


def entries_render(*, agent: Agent, entry_ids: list[str]) -> list[dict[str, Any]]:
    """The agent's cited entries in the seed's shape, in the order given; ids no longer found are skipped. Ids
    are unique per agent: another agent's entry with the same id is never shown."""
    rendered = []
    for entry_id in entry_ids:
        try:
            rendered.append(entry_render(decision_read(entry_id=entry_id, agent=agent)))
        except DomainError:
            continue
    return rendered


def proposal_sample_ids(*, proposal: Proposal) -> list[str]:
    ids = [str(i) for i in (proposal.sample_entry_ids or [])]
    if not ids:
        ids = list(proposal.evidence.filter(is_sample=True).order_by("id").values_list("entry_id", flat=True))
    if not ids:
        ids = list(proposal.evidence.order_by("id").values_list("entry_id", flat=True)[:SAMPLES_SHOWN])
    return ids[:SAMPLES_SHOWN]


@dataclass
class ClustersShown:
    """The clusters a proposal addresses, as the approval page shows them beside the chart."""

    top: list[dict[str, Any]]
    total: int
    band: tuple[float, float]
    kind: str


def proposal_clusters_shown(*, proposal: Proposal) -> ClustersShown:
    """The largest ``CLUSTERS_SHOWN`` clusters the proposal addresses, each with a plain sentence, its features in
    words and a few sample ids."""
    low, high, kind = proposal_band(
        direction=proposal.direction, current=proposal.current_value, proposed=proposal.proposed_value
    )
    clusters = [c for c in (proposal.clusters or []) if isinstance(c, dict)]
    top = []
    for c in clusters[:CLUSTERS_SHOWN]:
        effects = [
            (str(f["feature"]), float(f.get("effect") or 0))
            for f in c.get("distinguishingFeatures") or []
            if isinstance(f, dict) and "feature" in f
        ]
        features = [f"{name} {'high' if effect > 0 else 'low'} ({effect:+.1f} sd)" for name, effect in effects]
        samples = [str(i) for i in c.get("sampleEntryIds") or []]
        top.append(
            {
                **c,
                "sentence": cluster_sentence(c),
                "features_text": features,
                "samples_shown": samples[:CLUSTER_SAMPLES_SHOWN],
                "samples_more": max(0, len(samples) - CLUSTER_SAMPLES_SHOWN),
                "share_pct": round(100 * float(c["share"])) if isinstance(c.get("share"), int | float) else None,
            }
        )
    return ClustersShown(top=top, total=len(clusters), band=(low, high), kind=kind)


@dataclass(frozen=True)
class ApprovalState:
    """Where a proposal's sign-offs stand against its agent's ``required_approvals``."""

    required: int
    counting: list[ProposalApproval]  # the sign-offs that count, oldest first
    earlier: list[ProposalApproval]  # sign-offs a later modify made stop counting
    value: float  # what an accept signs off now: the proposed value, or the value of the modify the count began with
    needed: int  # more accepts by other approvers before it goes live; 0 once it is no longer pending

    def signed_by(self, user: Any) -> ProposalApproval | None:
        """``user``'s sign-off among those that count, if any."""
        return next((a for a in self.counting if a.approver_id == getattr(user, "pk", None)), None)

    @property
    def restarted_by(self) -> ProposalApproval | None:
        """The modify that restarted the count, when earlier sign-offs no longer count."""
        return self.counting[0] if self.earlier and self.counting else None


def proposal_approvals(*, proposal: Proposal) -> ApprovalState:
    signoffs = list(proposal.approvals.all())
    counting = [a for a in signoffs if a.superseded_at is None]
    required = int(proposal.agent.required_approvals)
    pending = proposal.status == Proposal.Status.PENDING
    return ApprovalState(
        required=required,
        counting=counting,
        earlier=[a for a in signoffs if a.superseded_at is not None],
        value=counting[0].value if counting else proposal.proposed_value,
        # A pending proposal needs at least one more accept, even when its agent now requires fewer than signed.
        needed=max(1, required - len(counting)) if pending else 0,
    )


def approval_render(approval: ProposalApproval) -> dict[str, Any]:
    """One sign-off as the API and the audit trail show it."""
    return {
        "approver": approval.approver.get_username(),
        "decision": approval.decision,
        "value": approval.value,
        "rationale": approval.rationale,
        "at": approval.at.isoformat().replace("+00:00", "Z"),
        "counts": approval.superseded_at is None,
    }


@dataclass
class ProposalView:
    """What an approver needs to decide: the seed's approval-view fields, the current value read live."""

    proposal: Proposal
    live_value: float | None
    live_version: int
    definition: ThresholdDefinition | None
    allowed_min: float | None
    allowed_max: float | None
    allowance: Any  # approvals.guard.Allowance: this cycle's range, base value and changes left
    samples: list[dict[str, Any]]
    evidence_ids: list[str]
    impact: dict[str, Any] = field(default_factory=dict)
    approvals: ApprovalState | None = None
    summary: "ImpactSummary | None" = None
    heading: "ProposalHeading | None" = None

    @property
    def risk_first(self) -> bool:
        return bool(self.proposal.risk_flagged)


def proposal_view(*, proposal: Proposal, now: datetime) -> ProposalView:
    from approvals.guard import allowance

    live = config_get_live(agent=proposal.agent)
    definition = ThresholdDefinition.objects.filter(agent=proposal.agent, name=proposal.threshold_name).first()
    lo = hi = allowed = None
    if definition is not None:
        # What this cycle allows, whatever else went live since the proposal was made (the guard's own answer).
        allowed = allowance(agent=proposal.agent, threshold_name=proposal.threshold_name, now=now)
        lo, hi = allowed.low, allowed.high
    return ProposalView(
        proposal=proposal,
        live_value=live.thresholds.get(proposal.threshold_name),
        live_version=live.version,
        definition=definition,
        allowed_min=lo,
        allowed_max=hi,
        allowance=allowed,
        samples=entries_render(agent=proposal.agent, entry_ids=proposal_sample_ids(proposal=proposal)),
        evidence_ids=proposal_evidence_ids(proposal),
        impact=dict(proposal.impact or {}),
        approvals=proposal_approvals(proposal=proposal),
        summary=proposal_impact(proposal=proposal),
        heading=proposal_heading(proposal=proposal),
    )


MONTH_DAYS = 30


@dataclass(frozen=True)
class ImpactFigure:
    """One replayed figure over the tuner's window: the change, its likely range (the replay's 90 % interval)
    and the change scaled to a month."""

    change: float
    low: float | None
    high: float | None
    per_month: float


@dataclass(frozen=True)
class ImpactSummary:
    """A proposal's expected impact said once: a plain sentence first, then the figures behind it."""

    sentence: str
    window_days: int
    false_alarms: ImpactFigure | None
    misses: ImpactFigure | None
    beats_share: float | None
    miss_budget: str
    risk: str


def _about(value: float) -> int:
    """A count as people say it with "about": two significant figures from 100 on."""
    n = abs(value)
    if n >= 100:
        step = 10 ** (len(str(int(n))) - 2)
        return int(round(n / step) * step)
    return int(round(n))


def _figure(impact: dict[str, Any], new: str, old: str, scale: float) -> ImpactFigure | None:
    # Two stored shapes: {"falseAlarms": {"change", "low", "high"}} and the older {"falseAlarmChange", ...Interval}.
    if isinstance(impact.get(new), dict) and impact[new].get("change") is not None:
        f = impact[new]
        change, low, high = float(f["change"]), f.get("low"), f.get("high")
    elif impact.get(f"{old}Change") is not None:
        interval = impact.get(f"{old}Interval") or [None, None]
        change, low, high = float(impact[f"{old}Change"]), interval[0], interval[1]
    else:
        return None
    return ImpactFigure(change, low, high, change * scale)


def _impact_sentence(fa: ImpactFigure | None, miss: ImpactFigure | None) -> str:
    parts = []
    if fa is not None:
        n = _about(fa.per_month)
        if n == 0:
            parts.append("Leaves false alarms about where they are")
        else:
            verb = "Cuts" if fa.per_month < 0 else "Adds"
            parts.append(f"{verb} about {n} false alarm{'s' if n != 1 else ''} a month")
    if miss is not None:
        n = _about(miss.per_month)
        if n == 0:
            tail = "lets no more real cases through"
        elif miss.per_month > 0:
            tail = f"may let about {n} more real case{'s' if n != 1 else ''} through"
        else:
            tail = f"catches about {n} more real case{'s' if n != 1 else ''}"
        parts.append(tail if parts else tail[0].upper() + tail[1:])
    return " and ".join(parts) + "." if parts else ""


def _budget_text(budget: dict[str, Any] | None) -> str:
    if not budget or budget.get("rateProposed") is None or budget.get("allowedRate") is None:
        return ""
    return (
        f"Miss budget against the reference of {budget.get('reference', 'the agent')}: "
        f"{float(budget['rateProposed']):.2%} of real cases missed, {float(budget['allowedRate']):.2%} allowed"
    )


RISK_PREFIX = "RISK: may raise missed signals."


def _risk_text(proposal: Proposal, impact: dict[str, Any]) -> str:
    """The risk in plain words, without the figures the impact already states. A flagged risk names the tests that
    fired; a model's note (after "Analyst:") is kept."""
    text = proposal.risk_assessment.strip()
    if not proposal.risk_flagged:
        return text
    analyst = text[text.index(" Analyst: ") + 1 :] if " Analyst: " in text else ""
    reasons = impact.get("riskReasons") or []
    sentences = []
    if "material" in reasons:
        sentences.append("The replay finds more real cases missed than chance explains.")
    if "budget" in reasons:
        budget = impact.get("missBudget") or {}
        against = f" against the reference of {budget['reference']}" if budget.get("reference") else ""
        sentences.append(f"It would use more than half of the missed signals left in the miss budget{against}.")
    if not sentences:
        body = text.split(" Analyst: ")[0] if analyst else text
        sentences.append(body.removeprefix(RISK_PREFIX).strip())
    return " ".join(s for s in [*sentences, analyst] if s)


def proposal_impact(*, proposal: Proposal) -> ImpactSummary:
    """The replayed impact scaled to a month from the window it was replayed over (the run's; for a proposal
    without a run, the agent's tuner window)."""
    impact = dict(proposal.impact or {})
    if proposal.run is not None:
        days = max(1, round((proposal.run.window_end - proposal.run.window_start).total_seconds() / 86400))
    else:
        days = 7 * (proposal.agent.window_weeks or rule("DEFAULT_WINDOW_WEEKS"))
    scale = MONTH_DAYS / days
    fa = _figure(impact, "falseAlarms", "falseAlarm", scale)
    miss = _figure(impact, "misses", "miss", scale)
    beats = impact.get("beatsCurrentShare")
    sentence = _impact_sentence(fa, miss)
    if sentence and proposal.decided_value is not None and proposal.decided_value != proposal.proposed_value:
        # The replay was of the proposed value, not of the one an approver made live.
        sentence = f"Replayed for the proposed {proposal.proposed_value:.6g}: {sentence[0].lower()}{sentence[1:]}"
    return ImpactSummary(
        sentence=sentence,
        window_days=days,
        false_alarms=fa,
        misses=miss,
        beats_share=float(beats) if beats is not None else None,
        miss_budget=_budget_text(impact.get("missBudget")),
        risk=_risk_text(proposal, impact),
    )


@dataclass(frozen=True)
class ProposalHeading:
    """What a proposal changes, true whatever became of it: from the value when proposed to the decided value
    once decided (with the proposed one when an approver modified it), else to the proposed value."""

    before: float
    after: float
    note: str


def proposal_heading(*, proposal: Proposal) -> ProposalHeading:
    decided = proposal.decided_value
    if decided is not None and proposal.status != Proposal.Status.PENDING:
        if proposal.status == Proposal.Status.MODIFIED or decided != proposal.proposed_value:
            note = f"modified from the proposed {proposal.proposed_value:.6g}"
        else:
            note = "accepted as proposed"
        if proposal.status == Proposal.Status.CANARY:
            note += ", as a canary on a share of sessions"
        if proposal.status == Proposal.Status.ROLLED_BACK:
            note += ", since rolled back"
        return ProposalHeading(proposal.current_value, decided, note)
    note = "proposed" if proposal.status == Proposal.Status.PENDING else f"proposed, {proposal.get_status_display()}"
    return ProposalHeading(proposal.current_value, proposal.proposed_value, note.replace("_", " ").lower())


def threshold_chart(*, agent: Agent, threshold_name: str, now: datetime, weeks: int | None = None) -> dict[str, Any]:
    """Responded decisions under one threshold in the last ``weeks``, counted by bin of the score the threshold is
    compared with (the confidence, or for a rule-based agent its rule's score: ``tuner.selectors.rule_score``) and
    by label. Decisions without that score are left out."""
    weeks = weeks or int(agent.window_weeks or rule("DEFAULT_WINDOW_WEEKS"))
    definition = ThresholdDefinition.objects.filter(agent=agent, name=threshold_name).first()
    score = rule_score(definition) if agent.rule_based and definition is not None else F("confidence")
    rows = (
        Decision.objects.filter(
            agent=agent,
            threshold_name=threshold_name,
            timestamp__gte=now - timedelta(weeks=weeks),
            timestamp__lt=now,
            response_action__isnull=False,
        )
        .annotate(score=score)
        .values_list("score", "response_action", "modified_action", "action")
    )
    counts = {label: [0] * CHART_BINS for label in ("approve", "dismiss", "escalate")}
    actions = list(agent.actions)
    for value, response, modified, taken in rows.iterator():
        label = effective_label(response, modified, taken, actions)
        if label not in counts or value is None:
            continue
        index = min(CHART_BINS - 1, max(0, int(value * CHART_BINS)))
        counts[label][index] += 1
    return {
        "scoreName": definition.score_feature
        if agent.rule_based and definition and definition.score_feature
        else "confidence",
        "labels": [f"{i / CHART_BINS:.2f}" for i in range(CHART_BINS)],
        "binWidth": 1 / CHART_BINS,
        "approved": counts["approve"],
        "dismissed": counts["dismiss"],
        "escalated": counts["escalate"],
        "weeks": weeks,
    }


# --- Watchdog -----------------------------------------------------------------------------------------------

# A version is watched when it went live from a proposal, or by hand without restoring an earlier version (a
# ``manual`` change that is not a rollback). Rollbacks restore values that were live before and are not watched.
WATCHED_SOURCES = Q(source=ConfigVersion.Source.PROPOSAL) | Q(
    source=ConfigVersion.Source.MANUAL, rolled_back_version__isnull=True
)


@dataclass(frozen=True)
class ErrorCounts:
    """Responded decisions and their errors ((dismiss + escalate + modify) / responded).

    ``errors`` and ``responses`` are raw counts. The weighted sums count a sampled weakest-action decision
    1 / sample rate times (contract: estimates that use the samples weight them so); left out, every response
    weighs 1.
    """

    errors: int
    responses: int
    weighted_errors: float | None = None
    weight: float | None = None
    weight_sq: float | None = None
    sampled: int = 0

    @property
    def total_weight(self) -> float:
        return float(self.responses) if self.weight is None else self.weight

    @property
    def error_weight(self) -> float:
        return float(self.errors) if self.weighted_errors is None else self.weighted_errors

    @property
    def rate(self) -> float | None:
        """The weighted error rate."""
        return self.error_weight / self.total_weight if self.total_weight > 0 else None

    @property
    def raw_rate(self) -> float | None:
        return self.errors / self.responses if self.responses else None

    @property
    def effective_n(self) -> float:
        """Kish's effective sample size (sum w)^2 / sum w^2: what the weighted rate's variance is worth."""
        squares = float(self.responses) if self.weight_sq is None else self.weight_sq
        return self.total_weight**2 / squares if squares > 0 else 0.0


def sample_weight(*, agent: Agent) -> float:
    """What one sampled weakest-action decision stands for: 1 / the agent's review sample rate."""
    rate = float(agent.review_sample_rate or 0.0)
    return 1.0 / rate if 0.0 < rate < 1.0 else 1.0


Interval = tuple[datetime, datetime]
_SAMPLED = Q(review_reason=ReviewReason.SAMPLED)


def error_counts(*, agent: Agent, intervals: list[Interval], version_pk: int | None = None) -> ErrorCounts:
    """Errors among the agent's responded decisions whose ``timestamp`` falls in one of ``intervals``
    (each [start, end)), by the decisions' own time whatever version they were logged under; with
    ``version_pk``, only those logged under that version (one arm of a canary)."""
    intervals = [(lo, hi) for lo, hi in intervals if hi > lo]
    if not intervals:
        return ErrorCounts(errors=0, responses=0, weighted_errors=0.0, weight=0.0, weight_sq=0.0)
    values: dict[str, Any] = {"agent": agent.pk, "version": version_pk}
    for i, (lo, hi) in enumerate(intervals):
        values[f"lo{i}"], values[f"hi{i}"] = lo, hi
    responses, sampled, errors, sampled_errors = _error_totals(len(intervals), version_pk is not None).one(**values)
    heavy = sample_weight(agent=agent)
    weight = (responses - sampled) + sampled * heavy
    weight_sq = (responses - sampled) + sampled * heavy * heavy
    weighted_errors = (errors - sampled_errors) + sampled_errors * heavy
    return ErrorCounts(
        errors=errors,
        responses=responses,
        weighted_errors=weighted_errors,
        weight=weight,
        weight_sq=weight_sq,
        sampled=sampled,
    )


_TIME = Decision._meta.get_field("timestamp")
_AGENT = Decision._meta.get_field("agent")


@compiled(Decision)
def _error_totals(intervals: int, by_version: bool) -> QuerySet[Decision]:
    """``error_counts``'s statement over ``intervals`` intervals (``lo0``/``hi0``...), of one version's decisions
    when ``by_version``: compiled once per shape, as the watchdog asks it every hour (``loopsite.compiled``)."""
    when = Q()
    for i in range(intervals):
        when |= Q(timestamp__gte=Param(f"lo{i}", _TIME), timestamp__lt=Param(f"hi{i}", _TIME))
    qs = (
        Decision.objects.filter(agent_id=Param("agent", _AGENT), response_action__isnull=False)
        .filter(when)
        .exclude(review_reason=ReviewReason.SHADOW)  # beyond the uniform sample: the shadow's evidence only
    )
    if by_version:
        qs = qs.filter(config_version_id=Param("version", Decision._meta.get_field("config_version")))
    # Four counts in one row, not a row per (response, reason): no sort of the interval's rows to group them.
    return totals(
        qs,
        responses=Count("seq"),
        sampled=Count("seq", filter=_SAMPLED),
        errors=Count("seq", filter=ERROR_RESPONSE),
        sampled_errors=Count("seq", filter=ERROR_RESPONSE & _SAMPLED),
    )


def watch_baseline(*, version: ConfigVersion) -> tuple[ConfigVersion | None, ErrorCounts]:
    """The last version before ``version`` with WATCHDOG_BASELINE_MIN_RESPONSES responses of its own, counted
    by the decisions' timestamps in [its activation, its supersession), within the WATCHDOG_BASELINE_WEEKS
    before ``version`` went live. Versions rolled back by the watchdog or by hand are skipped: their data are
    known to be worse. Back-to-back changes thus share the last stable version as their baseline."""
    change = version.activated_at
    since = change - timedelta(weeks=int(rule("WATCHDOG_BASELINE_WEEKS")))
    needed = int(rule("WATCHDOG_BASELINE_MIN_RESPONSES"))
    candidates = _baseline_candidates().instances(
        ConfigVersion, agent=version.agent_id, number=version.number, change=change, since=since
    )
    for candidate in candidates:
        lo = max(candidate.activated_at, since)
        hi = min(candidate.superseded_at or change, change)
        counts = error_counts(agent=version.agent, intervals=[(lo, hi)])
        if counts.responses >= needed:
            return candidate, counts
    return None, ErrorCounts(errors=0, responses=0, weighted_errors=0.0, weight=0.0, weight_sq=0.0)


def watch_new_intervals(*, version: ConfigVersion, until: datetime) -> list[Interval]:
    """The new side of a watched version: from its activation to ``until``, less the time later versions that
    were since rolled back were live (their data belong to them, not to this change)."""
    start = version.activated_at
    if until <= start:
        return []
    undone = _undone_after().rows(agent=version.agent_id, number=version.number)
    intervals: list[Interval] = []
    cursor = start
    for lo, hi in undone:
        hi = min(hi or until, until)
        if lo > cursor:
            intervals.append((cursor, min(lo, until)))
        cursor = max(cursor, hi)
        if cursor >= until:
            break
    if cursor < until:
        intervals.append((cursor, until))
    return [(lo, hi) for lo, hi in intervals if hi > lo]


_VERSION_AGENT = ConfigVersion._meta.get_field("agent")
_NUMBER = ConfigVersion._meta.get_field("number")
_ACTIVATED = ConfigVersion._meta.get_field("activated_at")


@compiled(ConfigVersion)
def _baseline_candidates() -> QuerySet[ConfigVersion]:
    """``watch_baseline``'s candidates, newest first: the agent's versions numbered before ``number``, live
    before ``change`` and still live at ``since``; compiled once, as every hourly pass asks."""
    return (
        ConfigVersion.objects.filter(
            agent_id=Param("agent", _VERSION_AGENT),
            number__lt=Param("number", _NUMBER),
            activated_at__lt=Param("change", _ACTIVATED),
        )
        .exclude(source=ConfigVersion.Source.CANARY)  # never live for everyone: not a before
        .filter(Q(superseded_at__isnull=True) | Q(superseded_at__gt=Param("since", _ACTIVATED)))
        .exclude(watch__state=VersionWatch.State.ROLLED_BACK)
        .order_by("-number")
    )


@compiled(ConfigVersion)
def _undone_after() -> QuerySet[ConfigVersion, Any]:
    """The times the agent's versions after ``number`` that were rolled back were live, in order."""
    return (
        ConfigVersion.objects.filter(
            agent_id=Param("agent", _VERSION_AGENT),
            number__gt=Param("number", _NUMBER),
            watch__state=VersionWatch.State.ROLLED_BACK,
        )
        .order_by("activated_at")
        .values_list("activated_at", "superseded_at")
    )


def watchable_versions(*, agent: Agent | None = None) -> QuerySet[ConfigVersion]:
    versions = ConfigVersion.objects.filter(WATCHED_SOURCES)
    return versions if agent is None else versions.filter(agent=agent)


@dataclass(frozen=True)
class WatchRow:
    """One change under watch (or judged) as the dashboard lists it."""

    version: ConfigVersion
    state: str

    @property
    def label(self) -> str:
        return self.state.replace("_", " ")


def version_watches(*, agent: Agent, now: datetime, limit: int = 8) -> list[WatchRow]:
    """An agent's watched changes, newest first: the watch rows, and the versions made live since the
    watchdog's last pass (watching, though their rows are made by the next pass)."""
    rows = [
        WatchRow(version=w.version, state=w.state)
        for w in VersionWatch.objects.filter(agent=agent)
        .select_related("version", "version__proposal")
        .order_by("-version__number")[:limit]
    ]
    fresh = watchable_versions(agent=agent).filter(
        activated_at__gte=now - timedelta(days=int(rule("WATCHDOG_WATCH_DAYS"))),
        activated_at__lte=now,
        watch__isnull=True,
    )
    rows += [WatchRow(version=v, state=VersionWatch.State.WATCHING) for v in fresh.select_related("proposal")]
    return sorted(rows, key=lambda r: -r.version.number)[:limit]


def proposal_watch(*, proposal: Proposal) -> tuple[ConfigVersion | None, VersionWatch | None]:
    """The version a proposal made live, if any, and its watch (None until the watchdog's next pass or the
    watch page makes it)."""
    version = (
        ConfigVersion.objects.filter(proposal=proposal, source=ConfigVersion.Source.PROPOSAL)
        .order_by("-number")
        .first()
    )
    if version is None:
        return None, None
    return version, VersionWatch.objects.filter(version=version).first()


# --- Audit trail ----------------------------------------------------------------------------------------------


def audit_events(*, agent: Agent | None = None, threshold: str | None = None) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.select_related("agent", "actor", "config_version", "proposal", "run")
    if agent is not None:
        qs = qs.filter(agent=agent)
    if threshold:
        # A config change that moved several thresholds at once (a manual rollback) names none: keep it.
        agent_wide = [AuditEvent.Kind.CONFIG_ROLLED_BACK, AuditEvent.Kind.CONFIG_MANUAL]
        qs = qs.filter(Q(threshold_name=threshold) | Q(threshold_name="", kind__in=agent_wide))
    return qs.order_by("at", "id")


def audit_event_render(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "kind": event.kind,
        "agentId": event.agent.agent_id,
        "thresholdName": event.threshold_name,
        "actor": event.actor_label,
        "before": event.before,
        "after": event.after,
        "proposalId": event.proposal_id,
        "runId": event.run_id,
        "configVersion": event.config_version.number if event.config_version is not None else None,
        "evidenceEntryIds": event.evidence_entry_ids,
        "detail": event.detail,
        "message": event.message,
    }


AUDIT_CSV_COLUMNS = [
    "id",
    "at",
    "kind",
    "agentId",
    "thresholdName",
    "actor",
    "before",
    "after",
    "proposalId",
    "runId",
    "configVersion",
    "evidenceEntryIds",
    "message",
]
