"""Writing the append-only audit trail. Call inside the transaction of the change it records."""

import logging
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from approvals.chain import GENESIS, fields_of, row_hash
from approvals.models import AuditEvent
from thresholds.models import Agent
from webhooks.services import webhooks_emit

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
    """``actor`` is a user or None (then ``actor_label`` says who: 'tuner', 'watchdog').

    The row joins the agent's hash chain: the agent's row is locked first, so two writers of one agent's trail
    take turns and each links to the row the other wrote."""
    event = AuditEvent(
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
    with transaction.atomic():
        _agent_row_lock(agent)
        last = AuditEvent.objects.filter(agent_id=agent.pk).order_by("-id").values_list("hash", flat=True).first()
        event.prev_hash = last or GENESIS
        event.hash = row_hash(prev_hash=event.prev_hash, fields=fields_of(event))
        event.save(force_insert=True)
    logger.info(kind, extra={"agent_id": agent.agent_id, "audit_event_id": event.pk, "threshold": threshold_name})
    webhooks_emit(event=event)  # deliveries in this transaction, sent after it commits
    return event


def _agent_row_lock(agent: Agent) -> None:
    """SELECT ... FOR UPDATE on PostgreSQL; on SQLite (no row locks) a no-op write, which takes the database's
    write lock at once when the transaction does not hold it yet."""
    if connection.vendor == "sqlite":
        Agent.objects.filter(pk=agent.pk).update(**{Agent._meta.pk.attname: F("pk")})
    else:
        Agent.objects.select_for_update().filter(pk=agent.pk).values_list("pk", flat=True).first()
