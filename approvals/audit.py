"""Writing the append-only audit trail. Call inside the transaction of the change it records."""

import logging
from datetime import datetime
from typing import Any

from approvals.models import AuditEvent
from thresholds.models import Agent

logger = logging.getLogger(__name__)


def audit_record(
    *,
    kind: str,
    agent: Agent,
    at: datetime,
    actor: Any = None,
    actor_label: str = "",
    threshold_name: str = "",
    before: Any = None,
    after: Any = None,
    proposal: Any = None,
    run: Any = None,
    config_version: Any = None,
    evidence_entry_ids: list[str] | None = None,
    detail: dict[str, Any] | None = None,
    message: str = "",
) -> AuditEvent:
    """``actor`` is a user or None (then ``actor_label`` says who: 'tuner', 'watchdog')."""
    event = AuditEvent.objects.create(
        kind=kind,
        agent=agent,
        at=at,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_label=actor_label or (getattr(actor, "username", "") or "system"),
        threshold_name=threshold_name,
        before=before,
        after=after,
        proposal=proposal,
        run=run,
        config_version=config_version,
        evidence_entry_ids=evidence_entry_ids or [],
        detail=detail or {},
        message=message,
    )
    logger.info(kind, extra={"agent_id": agent.agent_id, "audit_event_id": event.pk, "threshold": threshold_name})
    return event
