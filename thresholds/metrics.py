"""The four numbers to watch, week by week (contract, "Rates"), counted in the database.

Weeks are ISO weeks (Monday to Sunday) of decision time in the agent's timezone. Response rates belong to the
week the decision was made in, whenever the response arrived; proposals to the week they were made in;
acceptances and rollbacks to the week they happened in.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncWeek

from auditlog.models import Decision
from thresholds.models import Agent, ConfigVersion
from tuner.models import Proposal

MAX_WEEKS = 104
ACCEPTED = (Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED, Proposal.Status.ROLLED_BACK)
DECIDED = (*ACCEPTED, Proposal.Status.REJECTED)


@dataclass(frozen=True)
class WeekCounts:
    """Raw counts of one week; the rates are derived from them."""

    week_start: date
    decisions: int = 0
    queued: int = 0
    responses: int = 0
    queued_responses: int = 0
    approve: int = 0
    dismiss: int = 0
    escalate: int = 0
    modify: int = 0
    proposals: int = 0
    accepted: int = 0
    decided: int = 0
    rollbacks: int = 0
    config_version: int | None = None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True)
class WeeklyMetrics:
    week_start: date
    decisions: int
    queued: int
    responses: int
    response_rate: float | None
    dismissal_rate: float | None
    escalation_rate: float | None
    modification_rate: float | None
    approval_rate: float | None
    proposals: int
    accepted: int
    decided: int
    acceptance_rate: float | None
    rollbacks: int
    config_version: int | None

    @classmethod
    def from_counts(cls, c: WeekCounts) -> "WeeklyMetrics":
        """Pure: the contract's rates from one week's counts (None where the denominator is zero)."""
        return cls(
            week_start=c.week_start,
            decisions=c.decisions,
            queued=c.queued,
            responses=c.responses,
            response_rate=_rate(c.queued_responses, c.queued),
            dismissal_rate=_rate(c.dismiss, c.responses),
            escalation_rate=_rate(c.escalate, c.responses),
            modification_rate=_rate(c.modify, c.responses),
            approval_rate=_rate(c.approve, c.responses),
            proposals=c.proposals,
            accepted=c.accepted,
            decided=c.decided,
            acceptance_rate=_rate(c.accepted, c.decided),
            rollbacks=c.rollbacks,
            config_version=c.config_version,
        )

    def as_dict(self) -> dict[str, Any]:
        """The contract's field names (camelCase), plus ``queued``, ``decided`` and ``acceptanceRate``."""
        return {
            "weekStart": self.week_start.isoformat(),
            "decisions": self.decisions,
            "queued": self.queued,
            "responses": self.responses,
            "responseRate": self.response_rate,
            "dismissalRate": self.dismissal_rate,
            "escalationRate": self.escalation_rate,
            "modificationRate": self.modification_rate,
            "approvalRate": self.approval_rate,
            "proposals": self.proposals,
            "accepted": self.accepted,
            "decided": self.decided,
            "acceptanceRate": self.acceptance_rate,
            "rollbacks": self.rollbacks,
            "configVersion": self.config_version,
        }


def agent_tz(agent: Agent) -> tzinfo:
    try:
        return ZoneInfo(agent.timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def week_start_of(moment: datetime, tz: tzinfo) -> date:
    local = moment.astimezone(tz)
    return local.date() - timedelta(days=local.weekday())


def _week_key(value: Any, tz: tzinfo) -> date:
    # TruncWeek gives an aware datetime (or, on some backends, a date) at the local Monday.
    return value.astimezone(tz).date() if isinstance(value, datetime) else value


def _by_week(qs: QuerySet[Any], field: str, tz: tzinfo, **counts: Any) -> dict[date, dict[str, int]]:
    # Annotations are named n_<count> so none shadows a model field that a filter refers to (``queued``).
    named = {f"n_{name}": count for name, count in counts.items()}
    rows = qs.annotate(week=TruncWeek(field, tzinfo=tz)).values("week").annotate(**named).order_by()
    return {_week_key(row["week"], tz): {name: row[f"n_{name}"] for name in counts} for row in rows}


def weekly_metrics(*, agent: Agent, weeks: int, now: datetime) -> list[WeeklyMetrics]:
    """One row for each of the last ``weeks`` ISO weeks up to the one holding ``now``, oldest first."""
    weeks = max(1, min(int(weeks), MAX_WEEKS))
    tz = agent_tz(agent)
    last = week_start_of(now, tz)
    first = last - timedelta(weeks=weeks - 1)
    start = datetime.combine(first, time(), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=7), time(), tzinfo=tz)

    responded = Q(response_action__isnull=False)
    decisions = _by_week(
        Decision.objects.filter(agent=agent, timestamp__gte=start, timestamp__lt=end),
        "timestamp",
        tz,
        decisions=Count("seq"),
        queued=Count("seq", filter=Q(queued=True)),
        responses=Count("seq", filter=responded),
        queued_responses=Count("seq", filter=Q(queued=True) & responded),
        approve=Count("seq", filter=Q(response_action="approve")),
        dismiss=Count("seq", filter=Q(response_action="dismiss")),
        escalate=Count("seq", filter=Q(response_action="escalate")),
        modify=Count("seq", filter=Q(response_action="modify")),
    )
    proposals = _by_week(
        Proposal.objects.filter(agent=agent, created_at__gte=start, created_at__lt=end),
        "created_at",
        tz,
        proposals=Count("id"),
    )
    decisions_on_proposals = _by_week(
        Proposal.objects.filter(agent=agent, decided_at__gte=start, decided_at__lt=end, status__in=DECIDED),
        "decided_at",
        tz,
        accepted=Count("id", filter=Q(status__in=ACCEPTED)),
        decided=Count("id"),
    )
    rollbacks = _by_week(
        ConfigVersion.objects.filter(
            agent=agent, source=ConfigVersion.Source.ROLLBACK, activated_at__gte=start, activated_at__lt=end
        ),
        "activated_at",
        tz,
        rollbacks=Count("id"),
    )
    versions = list(
        ConfigVersion.objects.filter(agent=agent, activated_at__lt=end)
        .order_by("activated_at", "number")
        .values_list("activated_at", "number")
    )

    out = []
    for i in range(weeks):
        monday = first + timedelta(weeks=i)
        week_end = min(datetime.combine(monday + timedelta(days=7), time(), tzinfo=tz), now)
        live = [number for activated, number in versions if activated <= week_end]
        counts = WeekCounts(
            week_start=monday,
            **decisions.get(monday, {}),
            **proposals.get(monday, {}),
            **decisions_on_proposals.get(monday, {}),
            **rollbacks.get(monday, {}),
            config_version=live[-1] if live else None,
        )
        out.append(WeeklyMetrics.from_counts(counts))
    return out


# --- The dashboard: each threshold's history, with what changed it ---------------------------------------------


@dataclass(frozen=True)
class ThresholdEvent:
    """One mark on a threshold's history: a proposal made, a change made live (its approver), a rollback."""

    at: datetime
    kind: str  # proposed / accepted / modified / rejected / rolled back / manual / initial
    value: float | None
    before: float | None
    proposal_id: int | None
    version: int | None
    who: str
    text: str


@dataclass(frozen=True)
class ThresholdHistory:
    name: str
    action: str
    current: float | None
    steps: list[tuple[datetime, float]]  # the live value from each version's activation on
    events: list[ThresholdEvent]


def threshold_histories(*, agent: Agent) -> list[ThresholdHistory]:
    """Every threshold's values over the config versions, and the proposals, approvals and rollbacks behind them."""
    versions = list(
        ConfigVersion.objects.filter(agent=agent).select_related("approved_by", "proposal").order_by("number")
    )
    proposals = list(Proposal.objects.filter(agent=agent).select_related("decided_by").order_by("created_at", "pk"))
    out = []
    for definition in agent.thresholds.order_by("name"):
        name = definition.name
        steps: list[tuple[datetime, float]] = []
        events: list[ThresholdEvent] = []
        previous: float | None = None
        for v in versions:
            value = v.values.get(name)
            if value is None:
                continue
            value = float(value)
            changed = previous is None or abs(value - previous) > 1e-12
            if changed:
                steps.append((v.activated_at, value))
            if v.source == ConfigVersion.Source.INITIAL:
                events.append(ThresholdEvent(v.activated_at, "initial", value, None, None, v.number, "", v.reason))
            elif changed or (v.proposal is not None and v.proposal.threshold_name == name):
                kind = {
                    ConfigVersion.Source.PROPOSAL: "accepted",
                    ConfigVersion.Source.ROLLBACK: "rolled back",
                    ConfigVersion.Source.MANUAL: "manual",
                }.get(ConfigVersion.Source(v.source), str(v.source))
                if v.proposal is not None and v.proposal.status == Proposal.Status.MODIFIED:
                    kind = "modified"
                who = v.approved_by.get_username() if v.approved_by is not None else "watchdog"
                events.append(
                    ThresholdEvent(v.activated_at, kind, value, previous, v.proposal_id, v.number, who, v.reason)
                )
            previous = value
        for p in proposals:
            if p.threshold_name != name:
                continue
            events.append(
                ThresholdEvent(
                    p.created_at,
                    "proposed",
                    p.proposed_value,
                    p.current_value,
                    p.pk,
                    None,
                    "tuner" if p.run_id else "manual",
                    f"{p.confidence} confidence; {p.expected_impact}",
                )
            )
            if p.status == Proposal.Status.REJECTED and p.decided_at is not None:
                who = p.decided_by.get_username() if p.decided_by is not None else ""
                events.append(
                    ThresholdEvent(
                        p.decided_at, "rejected", p.proposed_value, p.current_value, p.pk, None, who, p.rationale
                    )
                )
        events.sort(key=lambda e: (e.at, e.kind != "proposed"))
        out.append(
            ThresholdHistory(
                name=name,
                action=definition.action,
                current=previous,
                steps=steps,
                events=events,
            )
        )
    return out
