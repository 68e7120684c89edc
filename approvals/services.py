"""The approval gate: deciding proposals, manual proposals, expiry and manual rollback.

Every change here writes its audit rows in the same transaction and sends its emails after commit. The rules
(contract 3, 6, 8) are checked here, whoever asks: the page, the admin, the API or a script.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from approvals.audit import audit_record
from approvals.exceptions import (
    AlreadyDecided,
    NotAnApprover,
    ProposalNotFound,
    RollbackRefused,
    SelfApprovalError,
)
from approvals.guard import EPS, agent_lock, approver_check, change_check, rationale_check
from approvals.models import AuditEvent
from loopsite.exceptions import ValidationFailed
from loopsite.outbox import outbox_send
from loopsite.rules import rule
from people.roles import is_approver, is_staff
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition
from thresholds.services import config_version_activate
from tuner.models import Proposal
from tuner.selectors import latest_done_run, run_clusters
from tuner.services import proposal_clusters

logger = logging.getLogger(__name__)

DECISIONS = ("accept", "reject", "modify")
_DECIDED_STATUS = {
    "accept": Proposal.Status.ACCEPTED,
    "modify": Proposal.Status.MODIFIED,
    "reject": Proposal.Status.REJECTED,
}
_AUDIT_KIND = {
    "accept": AuditEvent.Kind.PROPOSAL_ACCEPTED,
    "modify": AuditEvent.Kind.PROPOSAL_MODIFIED,
    "reject": AuditEvent.Kind.PROPOSAL_REJECTED,
}


def _definition(agent: Agent, threshold_name: str, field: str = "thresholdName") -> ThresholdDefinition:
    try:
        return ThresholdDefinition.objects.get(agent=agent, name=threshold_name)
    except ThresholdDefinition.DoesNotExist:
        raise ValidationFailed(f"{agent.agent_id} has no threshold {threshold_name!r}", field=field) from None


def _who(user: Any) -> str:
    return str(getattr(user, "username", "") or "someone")


def _evidence_ids(proposal: Proposal) -> list[str]:
    return list(proposal.evidence.order_by("id").values_list("entry_id", flat=True))


def proposal_decide(
    *, proposal: Proposal, actor: Any, decision: str, rationale: str, now: datetime, value: float | None = None
) -> Proposal:
    """Accept, reject or modify a pending proposal. Accept and modify make a new live config version at once.

    The proposal row is locked first, so of two approvers deciding at once one wins and the other is told who.
    """
    if decision not in DECISIONS:
        raise ValidationFailed("decision must be accept, reject or modify", field="decision")
    text = rationale_check(rationale)
    approver_check(actor, "decide proposals")
    if decision == "modify" and value is None:
        raise ValidationFailed("modify needs a value", field="value")

    with transaction.atomic():
        # The agent row first, as every change of its config does: concurrent accepts, locks and rollbacks of
        # one agent run one after the other, each seeing what the one before it made live.
        agent = agent_lock(proposal.agent)
        try:
            locked = Proposal.objects.select_for_update(of=("self",)).select_related("agent", "run").get(pk=proposal.pk)
        except Proposal.DoesNotExist:
            raise ProposalNotFound(f"no proposal {proposal.pk}") from None
        if locked.status != Proposal.Status.PENDING:
            raise AlreadyDecided(_not_pending_message(locked))
        if locked.created_by_id is not None and locked.created_by_id == getattr(actor, "pk", None):
            raise SelfApprovalError("you proposed this change; another approver must decide it")
        live = ConfigVersion.objects.get(agent=agent, is_live=True)
        live_value = live.values.get(locked.threshold_name)
        evidence_ids = _evidence_ids(locked)

        new_value: float | None = None
        if decision != "reject":
            chosen = locked.proposed_value if decision == "accept" else value
            new_value = change_check(agent=agent, threshold_name=locked.threshold_name, value=chosen, now=now)

        locked.status = _DECIDED_STATUS[decision]
        locked.decided_by = actor
        locked.decided_at = now
        locked.decided_value = new_value
        locked.rationale = text
        locked.save(update_fields=["status", "decided_by", "decided_at", "decided_value", "rationale"])

        version = None
        if new_value is not None:
            values = {k: float(v) for k, v in live.values.items()}
            values[locked.threshold_name] = new_value
            verb = "accepted" if decision == "accept" else f"modified to {new_value:g}"
            version = config_version_activate(
                agent=agent,
                values=values,
                source=ConfigVersion.Source.PROPOSAL,
                now=now,
                reason=f"proposal #{locked.pk} {verb} by {_who(actor)}: {text}",
                approved_by=actor,
                proposal=locked,
            )
        audit_record(
            kind=_AUDIT_KIND[decision],
            agent=agent,
            at=now,
            actor=actor,
            threshold_name=locked.threshold_name,
            before={locked.threshold_name: live_value},
            after={locked.threshold_name: new_value if new_value is not None else live_value},
            proposal=locked,
            run=locked.run,
            config_version=version,
            evidence_entry_ids=evidence_ids,
            detail={
                "decision": decision,
                "proposedValue": locked.proposed_value,
                "valueAtCycleStart": locked.current_value,
                "decidedValue": new_value,
            },
            message=text,
        )
        if version is not None:
            audit_record(
                kind=AuditEvent.Kind.CONFIG_ACTIVATED,
                agent=agent,
                at=now,
                actor=actor,
                threshold_name=locked.threshold_name,
                before=live.values,
                after=version.values,
                proposal=locked,
                run=locked.run,
                config_version=version,
                evidence_entry_ids=evidence_ids,
                detail={"version": version.number, "previousVersion": live.number, "source": version.source},
                message=f"v{version.number} live (was v{live.number})",
            )
    logger.info(
        f"proposal.{locked.status}",
        extra={"proposal_id": locked.pk, "agent_id": agent.agent_id, "by": _who(actor), "value": new_value},
    )
    return locked


def _not_pending_message(proposal: Proposal) -> str:
    if proposal.decided_by_id is not None:
        when = f" at {proposal.decided_at:%Y-%m-%d %H:%M} UTC" if proposal.decided_at else ""
        return f"proposal #{proposal.pk} was already decided by {_who(proposal.decided_by)} ({proposal.status}{when})"
    return f"proposal #{proposal.pk} is {proposal.status}, no longer pending"


def proposal_create_manual(
    *, agent: Agent, threshold_name: str, proposed_value: float, rationale: str, actor: Any, now: datetime
) -> Proposal:
    """A change proposed by a staff member. It goes through the same gate: another approver must decide it."""
    if not (is_staff(actor) or is_approver(actor)):
        raise NotAnApprover(f"{_who(actor)} may not propose threshold changes")
    text = rationale_check(rationale)
    definition = _definition(agent, threshold_name)
    with transaction.atomic():
        agent = agent_lock(agent)
        live = ConfigVersion.objects.get(agent=agent, is_live=True)
        if threshold_name not in live.values:
            raise ValidationFailed(f"the live config has no {threshold_name!r}", field="thresholdName")
        current = float(live.values[threshold_name])
        value = change_check(
            agent=agent, threshold_name=threshold_name, value=proposed_value, now=now, field="proposedValue"
        )
        if abs(value - current) <= EPS:
            raise ValidationFailed(f"{threshold_name} is {current:g} already", field="proposedValue")
        increase = value > current
        # A higher threshold fires its action less often: what it used to catch may now be missed.
        risk = (
            f"Raising {threshold_name} from {current:g} to {value:g} means {definition.action} fires less often; "
            "cases between the two values that deserved it would be missed (watch the escalation rate)."
            if increase
            else f"Lowering {threshold_name} from {current:g} to {value:g} means {definition.action} fires more "
            "often; expect more dismissals (false positives) in the review queue."
        )
        # A hand-made proposal names the clusters of the agent's latest cycle that its band holds, as the tuner's do.
        last_run = latest_done_run(agent=agent)
        addressed = (
            proposal_clusters(
                agent=agent,
                clusters=run_clusters(run=last_run),
                threshold_name=threshold_name,
                direction=Proposal.Direction.INCREASE if increase else Proposal.Direction.DECREASE,
                current=current,
                proposed=value,
            )
            if last_run is not None
            else []
        )
        proposal = Proposal.objects.create(
            agent=agent,
            run=None,
            rank=1,
            threshold_name=threshold_name,
            current_value=current,
            proposed_value=value,
            direction=Proposal.Direction.INCREASE if increase else Proposal.Direction.DECREASE,
            confidence=Proposal.Confidence.LOW,
            expected_impact=f"Manual proposal by {_who(actor)}: {text}",
            evidence_count=0,
            sample_entry_ids=[],
            risk_assessment=risk,
            risk_flagged=increase,
            clusters=addressed,
            created_by=actor,
            created_at=now,
        )
        audit_record(
            kind=AuditEvent.Kind.PROPOSAL_CREATED,
            agent=agent,
            at=now,
            actor=actor,
            threshold_name=threshold_name,
            before={threshold_name: current},
            after={threshold_name: value},
            proposal=proposal,
            detail={"manual": True, "direction": proposal.direction},
            message=text,
        )
        outbox_send("notify.manual_proposal", proposal_id=proposal.pk)  # after commit; retried if mail is down
    logger.info("proposal.created", extra={"proposal_id": proposal.pk, "agent_id": agent.agent_id, "manual": True})
    return proposal


def proposals_expire(*, now: datetime) -> list[Proposal]:
    """Pending proposals older than PROPOSAL_EXPIRY_DAYS become expired. Safe to run twice at once."""
    cutoff = now - timedelta(days=int(rule("PROPOSAL_EXPIRY_DAYS")))
    expired: list[Proposal] = []
    for pk in Proposal.objects.filter(status=Proposal.Status.PENDING, created_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            # A conditional update: only one of two overlapping runs writes the row and its audit event.
            if not Proposal.objects.filter(pk=pk, status=Proposal.Status.PENDING).update(
                status=Proposal.Status.EXPIRED
            ):
                continue
            proposal = Proposal.objects.select_related("agent", "run").get(pk=pk)
            audit_record(
                kind=AuditEvent.Kind.PROPOSAL_EXPIRED,
                agent=proposal.agent,
                at=now,
                actor_label="system",
                threshold_name=proposal.threshold_name,
                proposal=proposal,
                run=proposal.run,
                message=f"undecided for {rule('PROPOSAL_EXPIRY_DAYS')} days",
            )
        expired.append(proposal)
        logger.info("proposal.expired", extra={"proposal_id": pk, "agent_id": proposal.agent.agent_id})
    return expired


def config_rollback(
    *, agent: Agent, to_version: ConfigVersion | int, actor: Any, reason: str, now: datetime
) -> ConfigVersion:
    """Restore the values of an earlier version by hand, as a new live version.

    Rolling back to the version just before the live one is a ``rollback`` (and a live proposal change is
    marked rolled back); going back further is a ``manual`` change. Either way it is audited like any change.
    """
    approver_check(actor, "roll back configs")
    text = rationale_check(reason)
    with transaction.atomic():
        agent = agent_lock(agent)  # a rollback is exempt from the guard and the lock, but queues like any change
        live = (
            ConfigVersion.objects.select_for_update(of=("self",))
            .select_related("proposal")
            .get(agent=agent, is_live=True)
        )
        number = to_version if isinstance(to_version, int) else to_version.number
        try:
            target = ConfigVersion.objects.get(agent=agent, number=number)
        except ConfigVersion.DoesNotExist:
            raise RollbackRefused(f"{agent.agent_id} has no version {number}", field="toVersion") from None
        if target.number >= live.number:
            raise RollbackRefused(f"v{target.number} is not earlier than the live v{live.number}", field="toVersion")
        is_rollback = target.number == live.number - 1
        values = {k: float(v) for k, v in target.values.items()}
        version = config_version_activate(
            agent=agent,
            values=values,
            source=ConfigVersion.Source.ROLLBACK if is_rollback else ConfigVersion.Source.MANUAL,
            now=now,
            reason=f"rolled back to v{target.number} by {_who(actor)}: {text}",
            approved_by=actor,
            rolled_back_version=live,
        )
        proposal = live.proposal
        if proposal is not None and Proposal.objects.filter(
            pk=proposal.pk, status__in=[Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED]
        ).update(status=Proposal.Status.ROLLED_BACK, rolled_back_at=now):
            proposal.refresh_from_db()
        changed = sorted(k for k in set(values) | set(live.values) if values.get(k) != live.values.get(k))
        audit_record(
            kind=AuditEvent.Kind.CONFIG_ROLLED_BACK if is_rollback else AuditEvent.Kind.CONFIG_MANUAL,
            agent=agent,
            at=now,
            actor=actor,
            threshold_name=changed[0] if len(changed) == 1 else "",
            before=live.values,
            after=values,
            proposal=proposal,
            run=proposal.run if proposal is not None else None,
            config_version=version,
            detail={
                "manual": True,
                "fromVersion": live.number,
                "toVersion": target.number,
                "version": version.number,
                "changed": changed,
            },
            message=text,
        )
        outbox_send("notify.rollback", version_id=version.pk)  # after commit; retried if mail is down
    logger.info(
        "config.rolled_back",
        extra={"agent_id": agent.agent_id, "version": version.number, "to": target.number, "by": _who(actor)},
    )
    return version
