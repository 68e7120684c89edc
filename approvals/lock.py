"""Locking an agent's config: the loop's end state (contract rule 11, the seed's "final threshold config locked in").

A locked agent's tuner still runs and reports, but proposes nothing; hand-made proposals and accepts are refused by
the change guard; the watchdog keeps watching and may still roll back. Lock and unlock take the agent's row like
every change, so a lock racing an accept leaves one of them, never a change made after the lock.
"""

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from approvals.audit import audit_record
from approvals.guard import LOCK, UNLOCK, agent_lock, approver_check, rationale_check
from approvals.models import AuditEvent
from loopsite.exceptions import Conflict
from thresholds.models import Agent

logger = logging.getLogger(__name__)


def agent_config_lock(*, agent: Agent, actor: Any, rationale: str, now: datetime) -> Agent:
    text = rationale_check(rationale)
    with transaction.atomic():
        locked = agent_lock(agent)
        approver_check(actor, LOCK, agent=locked)
        if locked.is_locked:
            raise Conflict(f"{agent.agent_id}'s config is locked already", field="agentId")
        locked.locked_at, locked.locked_by, locked.lock_rationale = now, actor, text
        locked.save(update_fields=["locked_at", "locked_by", "lock_rationale"])
        audit_record(
            kind=AuditEvent.Kind.AGENT_LOCKED,
            agent=locked,
            at=now,
            actor=actor,
            before={"locked": False},
            after={"locked": True},
            message=text,
        )
    logger.info("agent.locked", extra={"agent_id": agent.agent_id, "by": actor.username})
    return locked


def agent_config_unlock(*, agent: Agent, actor: Any, rationale: str, now: datetime) -> Agent:
    text = rationale_check(rationale)
    with transaction.atomic():
        locked = agent_lock(agent)
        approver_check(actor, UNLOCK, agent=locked)
        if not locked.is_locked:
            raise Conflict(f"{agent.agent_id}'s config is not locked", field="agentId")
        was = {"locked": True, "lockedBy": locked.locked_by.username if locked.locked_by else None}
        locked.locked_at, locked.locked_by, locked.lock_rationale = None, None, ""
        locked.save(update_fields=["locked_at", "locked_by", "lock_rationale"])
        audit_record(
            kind=AuditEvent.Kind.AGENT_UNLOCKED,
            agent=locked,
            at=now,
            actor=actor,
            before=was,
            after={"locked": False},
            message=text,
        )
    logger.info("agent.unlocked", extra={"agent_id": agent.agent_id, "by": actor.username})
    return locked


def lock_render(agent: Agent) -> dict[str, Any]:
    return {
        "agentId": agent.agent_id,
        "locked": agent.is_locked,
        "lockedAt": agent.locked_at.isoformat().replace("+00:00", "Z") if agent.locked_at else None,
        "lockedBy": agent.locked_by.username if agent.locked_by is not None else None,
        "rationale": agent.lock_rationale,
    }
