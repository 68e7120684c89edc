"""Reads of the audit trail page: its filters (agent, threshold, event type, a range of UTC days), shared by the
page and its CSV export so that the file holds exactly what the page lists."""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.db.models import QuerySet

from approvals.models import AuditEvent
from approvals.selectors import audit_events
from auditlog.selectors import day_start
from loopsite.exceptions import DomainError
from thresholds.models import Agent
from thresholds.selectors import agent_get

AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilters:
    agent: Agent | None = None
    threshold: str = ""
    kind: str = ""
    date_from: date | None = None
    date_to: date | None = None

    def as_query(self) -> dict[str, str]:
        """The filters as query-string values, for the page links and the export link."""
        out = {
            "agent": self.agent.agent_id if self.agent else "",
            "threshold": self.threshold,
            "kind": self.kind,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in out.items() if v}


def _date(raw: Any) -> date | None:
    try:
        return date.fromisoformat(str(raw or "").strip())
    except ValueError:
        return None


def audit_filters_parse(data: Any) -> AuditFilters:
    """The filters a request names; an unknown agent, event type or a malformed date is no filter."""
    agent = None
    agent_id = str(data.get("agent") or "").strip()
    if agent_id:
        try:
            agent = agent_get(agent_id=agent_id)
        except DomainError:
            agent = None
    kind = str(data.get("kind") or "").strip()
    return AuditFilters(
        agent=agent,
        threshold=str(data.get("threshold") or "").strip(),
        kind=kind if kind in AuditEvent.Kind.values else "",
        date_from=_date(data.get("from")),
        date_to=_date(data.get("to")),
    )


def audit_events_filtered(*, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The events the filters let through, oldest first (as the API and the CSV export list them)."""
    qs = audit_events(agent=filters.agent, threshold=filters.threshold or None)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.date_from:
        qs = qs.filter(at__gte=day_start(filters.date_from))
    if filters.date_to:
        qs = qs.filter(at__lt=day_start(filters.date_to) + timedelta(days=1))
    return qs
