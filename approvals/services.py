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
    AlreadyApproved,
    AlreadyDecided,
    NotAnApprover,
    ProposalNotFound,
    RollbackRefused,
    SelfApprovalError,
)
from approvals.guard import (
    DECIDE,
    EPS,
    ROLL_BACK,
    agent_lock,
    approver_check,
    change_check,
    designation_check,
    rationale_check,
)
from approvals.models import AuditEvent
from approvals.rule_changes import rule_changes_record, rules_snapshot
from approvals.selectors import approval_render, proposal_evidence_ids
from loopsite.exceptions import ValidationFailed
from loopsite.outbox import outbox_send
from loopsite.rules import rule
from people.roles import is_approver, is_staff
from rollouts.services import Rollout, canary_start
from rollouts.signals import proposal_saved
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition
from thresholds.services import config_version_activate
from tuner.models import Proposal, ProposalApproval
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


def proposal_decide(
    *,
    proposal: Proposal,
    actor: Any,
    decision: str,
    rationale: str,
    now: datetime,
    value: float | None = None,
    canary: Rollout | None = None,
) -> Proposal:
    """Accept, reject or modify a pending proposal.

    An accept or a modify is the actor's sign-off (``ProposalApproval``) on a value; the change goes live, as a new
    config version, on the agent's ``required_approvals``-th sign-off by distinct approvers (the first, by
    default). An accept signs off the value being approved (the proposed one, or the last modify's). A modify
    restarts the count on its value, the modifier's sign-off being the first: sign-offs of another value no longer
    count. A reject rejects at once, whatever was signed before. An approver counts once.

    The agent row, then the proposal row, are locked first, so of two approvers deciding at once one goes first
    and the other sees what it did: told who decided it, or adding the next sign-off.

    ``canary`` (with the sign-off that completes an accept or modify): the value goes live for a share of
    sessions only (``rollouts.services.canary_start``), and the watchdog promotes or aborts it.
    """
    if decision not in DECISIONS:
        raise ValidationFailed("decision must be accept, reject or modify", field="decision")
    text = rationale_check(rationale)

    with transaction.atomic():
        # The agent row first, as every change of its config does: concurrent accepts, locks and rollbacks of
        # one agent run one after the other, each seeing what the one before it made live.
        agent = agent_lock(proposal.agent)
        approver_check(actor, DECIDE, agent=agent)
        if decision == "modify" and value is None:
            raise ValidationFailed("modify needs a value", field="value")
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
        evidence_ids = proposal_evidence_ids(locked)
        signoffs = list(locked.approvals.filter(superseded_at=None).select_related("approver"))

        new_value: float | None = None
        if decision != "reject":
            required = agent.required_approvals
            if decision == "accept" and any(s.approver_id == actor.pk for s in signoffs):
                more = max(1, required - len(signoffs))
                raise AlreadyApproved(f"you already approved this; {more} more needed from other approvers")
            chosen = (signoffs[0].value if signoffs else locked.proposed_value) if decision == "accept" else value
            new_value = change_check(agent=agent, threshold_name=locked.threshold_name, value=chosen, now=now)
            if decision == "modify" and signoffs:
                locked.approvals.filter(pk__in=[s.pk for s in signoffs]).update(superseded_at=now)
                restarted, signoffs = signoffs, []
            else:
                restarted = []
            signoffs.append(
                ProposalApproval.objects.create(
                    proposal=locked, approver=actor, decision=decision, value=new_value, rationale=text, at=now
                )
            )
            if len(signoffs) < required:
                if canary is not None:
                    raise ValidationFailed(
                        f"a canary starts with the sign-off that makes the change; {required - len(signoffs)} more "
                        "approval(s) are needed first: accept without canary, and let the last approver roll it out",
                        field="canary",
                    )
                return _approval_record(
                    proposal=locked,
                    agent=agent,
                    actor=actor,
                    signoffs=signoffs,
                    restarted=restarted,
                    required=required,
                    live_value=live_value,
                    evidence_ids=evidence_ids,
                    now=now,
                )
            # The count started with a modify: the change goes live as modified, at the modify's value.
            decision = signoffs[0].decision

        if decision == "reject" and canary is not None:
            raise ValidationFailed("a rejected proposal has no canary", field="canary")
        locked.status = Proposal.Status.CANARY if canary is not None else _DECIDED_STATUS[decision]
        locked.decided_by = actor
        locked.decided_at = now
        locked.decided_value = new_value
        locked.rationale = text
        locked.save(update_fields=["status", "decided_by", "decided_at", "decided_value", "rationale"])

        version = None
        detail: dict[str, Any] = {
            "decision": decision,
            "proposedValue": locked.proposed_value,
            "valueAtCycleStart": locked.current_value,
            "decidedValue": new_value,
        }
        if len(signoffs) > 1 or (decision == "reject" and signoffs):  # others signed: who, and why
            detail.update(requiredApprovals=agent.required_approvals, approvals=_signoffs_json(signoffs))
        started = None
        if new_value is not None and canary is not None:
            started = canary_start(
                agent=agent,
                proposal=locked,
                live=live,
                value=new_value,
                rollout=canary,
                actor=actor,
                rationale=text,
                now=now,
            )
            version = started.version
            detail["canary"] = {"share": canary.share, "days": canary.days, "version": version.number}
        elif new_value is not None:
            values = {k: float(v) for k, v in live.values.items()}
            values[locked.threshold_name] = new_value
            verb = "accepted" if decision == "accept" else f"modified to {new_value:g}"
            names = ", ".join(_who(s.approver) for s in signoffs) if len(signoffs) > 1 else _who(actor)
            why = "; ".join(f"{_who(s.approver)}: {s.rationale}" for s in signoffs) if len(signoffs) > 1 else text
            version = config_version_activate(
                agent=agent,
                values=values,
                source=ConfigVersion.Source.PROPOSAL,
                now=now,
                reason=f"proposal #{locked.pk} {verb} by {names}: {why}",
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
            detail=detail,
            message=text,
        )
        if version is not None and started is None:
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


def _signoffs_json(signoffs: list[ProposalApproval]) -> list[dict[str, Any]]:
    return [{k: v for k, v in approval_render(s).items() if k != "counts"} for s in signoffs]


def _approval_record(
    *,
    proposal: Proposal,
    agent: Agent,
    actor: Any,
    signoffs: list[ProposalApproval],
    restarted: list[ProposalApproval],
    required: int,
    live_value: Any,
    evidence_ids: list[str],
    now: datetime,
) -> Proposal:
    """A sign-off short of the required count: audited; the proposal stays pending and nothing goes live."""
    signoff = signoffs[-1]
    needed = required - len(signoffs)
    detail: dict[str, Any] = {
        "decision": signoff.decision,
        "value": signoff.value,
        "proposedValue": proposal.proposed_value,
        "requiredApprovals": required,
        "approvalsNeeded": needed,
        "approvals": _signoffs_json(signoffs),
    }
    if restarted:
        detail["noLongerCounting"] = _signoffs_json(restarted)
    audit_record(
        kind=AuditEvent.Kind.PROPOSAL_APPROVAL_RECORDED,
        agent=agent,
        at=now,
        actor=actor,
        threshold_name=proposal.threshold_name,
        before={proposal.threshold_name: live_value},
        after={proposal.threshold_name: live_value},
        proposal=proposal,
        run=proposal.run,
        evidence_entry_ids=evidence_ids,
        detail=detail,
        message=signoff.rationale,
    )
    logger.info(
        "proposal.approval_recorded",
        extra={"proposal_id": proposal.pk, "agent_id": agent.agent_id, "by": _who(actor), "needed": needed},
    )
    return proposal


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
            proposal_saved(sender=Proposal, instance=proposal)  # an update sends no signal: its shadow ends
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
    text = rationale_check(reason)
    with transaction.atomic():
        agent = agent_lock(agent)  # a rollback is exempt from the guard and the lock, but queues like any change
        approver_check(actor, ROLL_BACK, agent=agent)
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
        if target.source == ConfigVersion.Source.CANARY:
            raise RollbackRefused(
                f"v{target.number} is a canary arm, never live for every session: roll back to a version that was",
                field="toVersion",
            )
        # The version live before this one (a canary arm's number may lie between them).
        before = (
            ConfigVersion.objects.filter(agent=agent, number__lt=live.number)
            .exclude(source=ConfigVersion.Source.CANARY)
            .order_by("-number")
            .values_list("number", flat=True)
            .first()
        )
        is_rollback = target.number == before
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


def agent_approvers_set(
    *,
    agent: Agent,
    approvers: list[Any],
    required: int | None,
    actor: Any,
    now: datetime,
    via: str,
    actor_label: str = "",
) -> Agent:
    """Set who may decide the agent's proposals (its designated approvers; none: every approver) and how many
    distinct approvals a change needs (``required`` None: unchanged). One ``rules.changed`` audit row with before
    and after, in the same transaction; nothing when nothing changed."""
    with transaction.atomic():
        locked = agent_lock(agent)  # decisions check the approvers under this lock: they wait for the new ones
        before = rules_snapshot(locked)
        count = locked.required_approvals if required is None else required
        designation_check(approvers=approvers, required=count)
        locked.approvers.set(approvers)
        if count != locked.required_approvals:
            locked.required_approvals = count
            locked.save(update_fields=["required_approvals"])
        rule_changes_record(agent=locked, before=before, actor=actor, at=now, via=via, actor_label=actor_label)
    logger.info(
        "agent.approvers_set",
        extra={"agent_id": locked.agent_id, "approvers": [_who(u) for u in approvers], "required": count},
    )
    return locked
