"""Discussion on a proposal: comments by approvers and admins, kept as audit rows.

A comment is an audit event (``proposal.commented``: the text in ``message``, the author as actor) in the
proposal's agent's hash chain, so it is append-only like every decision, is shown in order with the sign-offs and
the decision, and goes into the audit trail and its CSV export with no copy of its own. The agent's approvers are
emailed (all but the author), after commit through the outbox.
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from approvals.audit import audit_record
from approvals.exceptions import NotAnApprover
from approvals.guard import rationale_check
from approvals.models import AuditEvent
from loopsite.outbox import outbox_send
from people.roles import is_approver
from tuner.models import Proposal

# What the discussion of a proposal shows, in order: its life and what people said about it.
THREAD_KINDS = (
    AuditEvent.Kind.PROPOSAL_CREATED,
    AuditEvent.Kind.PROPOSAL_COMMENTED,
    AuditEvent.Kind.PROPOSAL_APPROVAL_RECORDED,
    AuditEvent.Kind.PROPOSAL_ACCEPTED,
    AuditEvent.Kind.PROPOSAL_MODIFIED,
    AuditEvent.Kind.PROPOSAL_REJECTED,
    AuditEvent.Kind.PROPOSAL_SUPERSEDED,
    AuditEvent.Kind.PROPOSAL_EXPIRED,
)


def proposal_comment(*, proposal: Proposal, actor: Any, text: str, now: datetime) -> AuditEvent:
    """Add a comment to a proposal's discussion (pending or decided). Approvers and admins only."""
    if not is_approver(actor):
        raise NotAnApprover(f"{getattr(actor, 'username', '') or 'someone'} is not an approver; only approvers comment")
    body = rationale_check(text, field="text")
    with transaction.atomic():
        event = audit_record(
            kind=AuditEvent.Kind.PROPOSAL_COMMENTED,
            agent=proposal.agent,
            at=now,
            actor=actor,
            threshold_name=proposal.threshold_name,
            proposal=proposal,
            message=body,
        )
        outbox_send("notify.comment", audit_event_id=event.pk)
    return event


def proposal_thread(proposal: Proposal) -> QuerySet[AuditEvent]:
    """The proposal's discussion and decisions, in the order they were written."""
    return AuditEvent.objects.filter(proposal=proposal, kind__in=THREAD_KINDS).select_related("actor").order_by("id")
