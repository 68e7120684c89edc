"""Emails to an agent's designated approvers. Callers send them from ``transaction.on_commit``.

Django's mail backends do the sending: the console in the embedded mode, SMTP from ``EMAIL_URL``. With no
designated approvers on the agent, every active approver (and admin) with an email address is told instead,
so a proposal or a rollback never goes unannounced.
"""

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse

from approvals.models import AuditEvent
from people.roles import GROUP_NAMES, Role
from thresholds.metrics import weekly_metrics
from thresholds.models import Agent, ConfigVersion
from tuner.models import Proposal, TunerRun
from webhooks.services import webhooks_digest_emit

logger = logging.getLogger(__name__)


def approver_emails(*, agent: Agent) -> list[str]:
    designated = agent.approvers.filter(is_active=True).exclude(email="")
    users = designated if designated.exists() else _all_approvers()
    return sorted({u.email for u in users})


def _all_approvers() -> Any:
    user_model = get_user_model()
    return (
        user_model.objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=GROUP_NAMES[Role.APPROVER]))
        .exclude(email="")
        .distinct()
    )


def link(name: str, *args: Any, query: str = "") -> str:
    return f"{settings.SITE_URL}{reverse(name, args=args)}{('?' + query) if query else ''}"


def _send(*, subject: str, template: str, context: dict[str, Any], recipients: list[str], event: str) -> int:
    if not recipients:
        logger.warning(f"{event}.no_recipients", extra=context.get("log", {}))
        return 0
    body = render_to_string(template, context)
    sent = send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    logger.info(event, extra={"recipients": len(recipients), **context.get("log", {})})
    return sent


def proposals_notify(*, run_id: int) -> int:
    """One email listing a cycle's pending proposals, with links. Called by the tuner after commit."""
    run = TunerRun.objects.select_related("agent").filter(pk=run_id).first()
    if run is None:
        return 0
    proposals = list(run.proposals.filter(status=Proposal.Status.PENDING).order_by("rank", "pk"))
    if not proposals:
        return 0
    agent = run.agent
    items = [{"p": p, "url": link("proposal-detail", p.pk)} for p in proposals]
    count = len(proposals)
    subject = f"[loopsite] {agent.agent_id}: {count} threshold proposal{'s' if count != 1 else ''} to decide"
    return _send(
        subject=subject,
        template="emails/proposals.txt",
        context={
            "agent": agent,
            "run": run,
            "items": items,
            "summary": (run.output or {}).get("summary", ""),
            "health": (run.output or {}).get("systemHealth", ""),
            "list_url": link("proposal-list", query=f"agent={agent.agent_id}"),
            "log": {"agent_id": agent.agent_id, "run_id": run.pk},
        },
        recipients=approver_emails(agent=agent),
        event="notification.proposals",
    )


def proposal_manual_notify(*, proposal_id: int) -> int:
    """A staff member's manual proposal: the other approvers are asked to decide it."""
    proposal = Proposal.objects.select_related("agent", "created_by").filter(pk=proposal_id).first()
    if proposal is None:
        return 0
    author = getattr(proposal.created_by, "email", "")
    recipients = [e for e in approver_emails(agent=proposal.agent) if e != author]
    return _send(
        subject=f"[loopsite] {proposal.agent.agent_id}: manual proposal for {proposal.threshold_name} to decide",
        template="emails/proposals.txt",
        context={
            "agent": proposal.agent,
            "run": None,
            "items": [{"p": proposal, "url": link("proposal-detail", proposal.pk)}],
            "summary": proposal.expected_impact,
            "health": "",
            "list_url": link("proposal-list", query=f"agent={proposal.agent.agent_id}"),
            "log": {"agent_id": proposal.agent.agent_id, "proposal_id": proposal.pk},
        },
        recipients=recipients,
        event="notification.manual_proposal",
    )


def comment_notify(*, audit_event_id: int) -> int:
    """A comment on a proposal, to the agent's approvers but its author. Called after commit."""
    event = AuditEvent.objects.select_related("agent", "proposal", "actor").filter(pk=audit_event_id).first()
    if event is None or event.proposal is None:
        return 0
    author = event.actor.email if event.actor is not None else ""
    recipients = [e for e in approver_emails(agent=event.agent) if e != author]
    proposal = event.proposal
    return _send(
        subject=f"[loopsite] {event.agent.agent_id}: {event.actor_label} commented on proposal #{proposal.pk}",
        template="emails/comment.txt",
        context={
            "event": event,
            "proposal": proposal,
            "url": link("proposal-detail", proposal.pk),
            "log": {"agent_id": event.agent.agent_id, "proposal_id": proposal.pk},
        },
        recipients=recipients,
        event="notify.comment",
    )


def rollback_notify(*, version_id: int) -> int:
    """What was rolled back, why, and the figures. Called after commit by the watchdog and manual rollbacks."""
    version = (
        ConfigVersion.objects.select_related("agent", "rolled_back_version", "approved_by")
        .filter(pk=version_id)
        .first()
    )
    if version is None or version.rolled_back_version is None:
        return 0
    undone = version.rolled_back_version
    agent = version.agent
    event = (
        AuditEvent.objects.filter(
            config_version=version, kind__in=[AuditEvent.Kind.CONFIG_ROLLED_BACK, "config.manual"]
        )
        .select_related("proposal")
        .first()
    )
    proposal = event.proposal if event is not None else undone.proposal
    changes = [
        {"name": k, "before": undone.values.get(k), "after": version.values.get(k)}
        for k in sorted(set(undone.values) | set(version.values))
        if undone.values.get(k) != version.values.get(k)
    ]
    assessment = (event.detail or {}).get("assessment") if event is not None else None
    by = event.actor_label if event is not None else "watchdog"
    what = ", ".join(f"{c['name']} {c['before']:g} -> {c['after']:g}" for c in changes) or "no value changed"
    subject = f"[loopsite] {agent.agent_id}: rolled back v{undone.number} ({what})"
    return _send(
        subject=subject,
        template="emails/rollback.txt",
        context={
            "agent": agent,
            "version": version,
            "undone": undone,
            "proposal": proposal,
            "changes": changes,
            "assessment": assessment,
            "why": event.message if event is not None else version.reason,
            "by": by,
            "audit_url": link("audit-trail", query=f"agent={agent.agent_id}"),
            "proposal_url": link("proposal-detail", proposal.pk) if proposal is not None else "",
            "log": {"agent_id": agent.agent_id, "version": version.number},
        },
        recipients=approver_emails(agent=agent),
        event="notification.rollback",
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _of(rate: float | None, whole: int) -> int:
    return round((rate or 0.0) * whole)


def digest_send(*, agent: Agent, now: datetime) -> int:
    """The weekly digest: dismissal, escalation, response and acceptance rates of the last full ISO week, beside
    the week before, from the dashboard's weekly metrics (one definition of the four numbers)."""
    before, last, _current = weekly_metrics(agent=agent, weeks=3, now=now)
    rows = [
        (
            "Dismissal rate",
            _pct(last.dismissal_rate),
            _pct(before.dismissal_rate),
            f"{_of(last.dismissal_rate, last.responses)} of {last.responses} responses",
        ),
        (
            "Escalation rate",
            _pct(last.escalation_rate),
            _pct(before.escalation_rate),
            f"{_of(last.escalation_rate, last.responses)} of {last.responses} responses",
        ),
        (
            "Response rate",
            _pct(last.response_rate),
            _pct(before.response_rate),
            f"{_of(last.response_rate, last.queued)} of {last.queued} queued",
        ),
        (
            "Acceptance rate",
            _pct(last.acceptance_rate),
            _pct(before.acceptance_rate),
            f"{last.accepted} of {last.decided} decided",
        ),
    ]
    pending = Proposal.objects.filter(agent=agent, status=Proposal.Status.PENDING).count()
    webhooks_digest_emit(agent=agent, week=last, week_before=before, pending=pending, now=now)
    return _send(
        subject=f"[loopsite] {agent.agent_id}: weekly digest, week of {last.week_start:%Y-%m-%d}",
        template="emails/digest.txt",
        context={
            "agent": agent,
            "week": last,
            "rows": rows,
            "pending": pending,
            "rollbacks": last.rollbacks,
            "list_url": link("proposal-list", query=f"agent={agent.agent_id}"),
            "audit_url": link("audit-trail", query=f"agent={agent.agent_id}"),
            "log": {"agent_id": agent.agent_id, "week": last.week_start.isoformat()},
        },
        recipients=approver_emails(agent=agent),
        event="notification.digest",
    )


def canary_notify(*, canary_id: int) -> int:
    """A canary started, promoted, aborted or out of time: what, the two arms' figures, and what is live now."""
    from rollouts.models import Canary

    canary = (
        Canary.objects.select_related("agent", "proposal", "version", "control", "result", "started_by")
        .filter(pk=canary_id)
        .first()
    )
    if canary is None:
        return 0
    agent, proposal = canary.agent, canary.proposal
    name = canary.threshold_name
    share = f"{canary.share:.0%}"
    result = canary.result
    headlines = {
        Canary.State.RUNNING: f"{agent.agent_id}: {canary.started_by.get_username()} started a canary of {name} for "
        f"{share} of sessions until {canary.ends_at:%Y-%m-%d %H:%M} UTC. The watchdog compares the two arms every "
        "hour and promotes or aborts it.",
        Canary.State.PROMOTED: f"{agent.agent_id}: the canary of {name} was promoted by {canary.ended_label}; "
        f"v{result.number if result else '?'} is live for every session.",
        Canary.State.ABORTED: f"{agent.agent_id}: the canary of {name} was aborted by {canary.ended_label}; "
        f"v{result.number if result else '?'} is live for every session with the earlier values.",
        Canary.State.INCONCLUSIVE: f"{agent.agent_id}: the canary of {name} ran out of time without a verdict. It "
        f"keeps serving {share} of sessions until an approver promotes or aborts it.",
    }
    return _send(
        subject=f"[loopsite] {agent.agent_id}: canary of {name} {canary.state}",
        template="emails/canary.txt",
        context={
            "headline": headlines[Canary.State(canary.state)],
            "canary": canary,
            "proposal": proposal,
            "share": share,
            "control_value": canary.control.values.get(name),
            "canary_value": canary.version.values.get(name),
            "why": canary.end_rationale or (canary.assessment and _figures_explained(canary.assessment)),
            "assessment": canary.assessment or None,
            "proposal_url": link("proposal-detail", proposal.pk),
            "audit_url": link("audit-trail", query=f"agent={agent.agent_id}"),
            "log": {"agent_id": agent.agent_id, "canary": canary.pk, "state": canary.state},
        },
        recipients=approver_emails(agent=agent),
        event="notification.canary",
    )


def _figures_explained(figures: dict[str, Any]) -> str:
    from approvals.watchdog import Assessment

    assessment = Assessment.from_dict(figures)
    return assessment.explain() if assessment is not None else ""
