"""Reads for the approval view, the watchdog, the audit trail and the digest."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet

from approvals.exceptions import ProposalNotFound
from approvals.models import AuditEvent
from auditlog.labels import effective_label, is_error
from auditlog.models import Decision
from auditlog.render import entry_render
from auditlog.services import decision_get
from loopsite.exceptions import DomainError
from loopsite.rules import rule
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition
from thresholds.selectors import config_get_live
from tuner.models import Proposal

SAMPLES_SHOWN = 5
CHART_BINS = 20


def proposal_get(*, proposal_id: int) -> Proposal:
    try:
        return Proposal.objects.select_related("agent", "run", "created_by", "decided_by").get(pk=proposal_id)
    except (Proposal.DoesNotExist, ValueError, TypeError):
        raise ProposalNotFound(f"no proposal {proposal_id}", field="id") from None


def proposals_list(*, agent: Agent | None = None, status: str | None = None) -> QuerySet[Proposal]:
    qs = Proposal.objects.select_related("agent", "run", "decided_by", "created_by")
    if agent is not None:
        qs = qs.filter(agent=agent)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "rank", "-pk")


def entries_render(entry_ids: list[str]) -> list[dict[str, Any]]:
    """The cited entries in the seed's shape, in the order given; ids no longer found are skipped."""
    rendered = []
    for entry_id in entry_ids:
        try:
            rendered.append(entry_render(decision_get(entry_id=entry_id)))
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
class ProposalView:
    """What an approver needs to decide: the seed's approval-view fields, the current value read live."""

    proposal: Proposal
    live_value: float | None
    live_version: int
    definition: ThresholdDefinition | None
    allowed_min: float | None
    allowed_max: float | None
    samples: list[dict[str, Any]]
    evidence_ids: list[str]
    impact: dict[str, Any] = field(default_factory=dict)

    @property
    def risk_first(self) -> bool:
        return bool(self.proposal.risk_flagged)


def proposal_view(*, proposal: Proposal) -> ProposalView:
    from approvals.services import move_bounds

    live = config_get_live(agent=proposal.agent)
    definition = ThresholdDefinition.objects.filter(agent=proposal.agent, name=proposal.threshold_name).first()
    lo = hi = None
    if definition is not None:
        lo, hi = move_bounds(base_value=proposal.current_value, definition=definition)
    return ProposalView(
        proposal=proposal,
        live_value=live.thresholds.get(proposal.threshold_name),
        live_version=live.version,
        definition=definition,
        allowed_min=lo,
        allowed_max=hi,
        samples=entries_render(proposal_sample_ids(proposal=proposal)),
        evidence_ids=list(proposal.evidence.order_by("id").values_list("entry_id", flat=True)),
        impact=dict(proposal.impact or {}),
    )


def threshold_chart(*, agent: Agent, threshold_name: str, now: datetime, weeks: int | None = None) -> dict[str, Any]:
    """Responded decisions under one threshold in the last ``weeks``, counted by confidence bin and label."""
    weeks = weeks or int(agent.window_weeks or rule("DEFAULT_WINDOW_WEEKS"))
    rows = Decision.objects.filter(
        agent=agent,
        threshold_name=threshold_name,
        timestamp__gte=now - timedelta(weeks=weeks),
        timestamp__lt=now,
        response_action__isnull=False,
    ).values_list("confidence", "response_action", "modified_action", "action")
    counts = {label: [0] * CHART_BINS for label in ("approve", "dismiss", "escalate")}
    actions = list(agent.actions)
    for confidence, response, modified, taken in rows.iterator():
        label = effective_label(response, modified, taken, actions)
        if label not in counts:
            continue
        index = min(CHART_BINS - 1, max(0, int(confidence * CHART_BINS)))
        counts[label][index] += 1
    return {
        "labels": [f"{i / CHART_BINS:.2f}" for i in range(CHART_BINS)],
        "binWidth": 1 / CHART_BINS,
        "approved": counts["approve"],
        "dismissed": counts["dismiss"],
        "escalated": counts["escalate"],
        "weeks": weeks,
    }


# --- Watchdog -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCounts:
    errors: int
    responses: int

    @property
    def rate(self) -> float | None:
        return self.errors / self.responses if self.responses else None


def version_error_counts(
    *, version: ConfigVersion, since: datetime | None = None, until: datetime | None = None
) -> ErrorCounts:
    """Errors ((dismiss + escalate + modify) / responded) among decisions logged under one version."""
    qs = Decision.objects.filter(config_version=version, response_action__isnull=False)
    if since is not None:
        qs = qs.filter(timestamp__gte=since)
    if until is not None:
        qs = qs.filter(timestamp__lt=until)
    by_action = dict(qs.values_list("response_action").annotate(n=Count("seq")).values_list("response_action", "n"))
    responses = sum(by_action.values())
    errors = sum(n for action, n in by_action.items() if is_error(action))
    return ErrorCounts(errors=errors, responses=responses)


def watched_versions(*, agent: Agent | None = None) -> QuerySet[ConfigVersion]:
    """Live versions made live from a proposal that stands (not yet rolled back); of one agent when given."""
    versions = ConfigVersion.objects.filter(
        is_live=True,
        source=ConfigVersion.Source.PROPOSAL,
        proposal__status__in=[Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED],
    ).select_related("agent", "proposal")
    return versions if agent is None else versions.filter(agent=agent)


def previous_version(*, version: ConfigVersion) -> ConfigVersion | None:
    return ConfigVersion.objects.filter(agent=version.agent, number__lt=version.number).order_by("-number").first()


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
