"""The proposals waiting for one approver: what the sign-in landing and the menu count. One query each."""

from typing import Any

from django.db.models import Q, QuerySet

from people.roles import is_admin, is_approver
from tuner.models import Proposal


def proposals_pending_for(*, user: Any) -> QuerySet[Proposal]:
    """Pending proposals ``user`` may decide: for an admin every one; for an approver those of agents without
    designated approvers or that name them, less their own (self-approval is refused) and those they already
    signed off; nothing for anyone else. The gate still decides each one (``approvals.guard``)."""
    if not is_approver(user):
        return Proposal.objects.none()
    qs = Proposal.objects.filter(status=Proposal.Status.PENDING)
    if is_admin(user):
        return qs
    return (
        qs.filter(Q(agent__approvers__isnull=True) | Q(agent__approvers=user))
        .exclude(created_by=user)
        .exclude(approvals__approver=user)
        .distinct()
    )
