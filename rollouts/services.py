"""Canary rollouts: start (an approver's accept as a canary), judge (the watchdog's pass), promote and abort.

A canary's arm is its own config version (source ``canary``, never ``is_live``); the live version stays the control.
Promotion and abort are new live versions like any change, with audit rows and a notification: a promotion makes
the canary's values live for everyone (source ``proposal``, the proposal accepted), an abort restores the control's
values (source ``rollback``, undoing the canary's version). While a canary serves no other change goes live
(``approvals.guard.canary_check``); a rollback made meanwhile aborts it (``canary_end_by_rollback``).
"""

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from approvals.audit import audit_record
from approvals.exceptions import CanaryClosed, SelfApprovalError
from approvals.guard import JUDGE, agent_lock, approver_check, rationale_check
from approvals.models import AuditEvent, VersionWatch
from approvals.selectors import error_counts, proposal_evidence_ids
from approvals.watchdog import Assessment
from loopsite.compiled import Param, compiled
from loopsite.exceptions import ValidationFailed
from loopsite.outbox import outbox_send
from loopsite.rules import rule
from rollouts.judge import canary_assess
from rollouts.models import Canary
from thresholds.models import Agent, ConfigVersion
from thresholds.services import config_version_activate, config_version_add_canary
from tuner.models import Proposal

logger = logging.getLogger(__name__)

State = Canary.State
MAX_DAYS = 28


@dataclass(frozen=True)
class Rollout:
    """What an approver asks for when accepting as a canary: the share of sessions and for how long."""

    share: float
    days: float

    @classmethod
    def parse(cls, raw: object) -> "Rollout | None":
        """``"canary"`` in a decision body: absent, false or null (no canary), true (the defaults), or
        ``{"share": 0.2, "days": 7}`` (each optional). Anything else is a 400 naming the field."""
        if raw is None or raw is False:
            return None
        if raw is True:
            raw = {}
        if not isinstance(raw, dict) or set(raw) - {"share", "days"}:
            raise ValidationFailed('canary must be true or {"share": 0..1, "days": N}', field="canary")
        share = raw.get("share", rule("CANARY_SHARE"))
        days = raw.get("days", rule("CANARY_DAYS"))
        for name, value in (("share", share), ("days", days)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ValidationFailed(f"canary.{name} must be a number", field=f"canary.{name}")
        if not 0.01 <= share <= 0.5:
            raise ValidationFailed(
                "canary.share must be from 0.01 to 0.5: the canary is the smaller arm", field="canary.share"
            )
        if not 1 / 24 <= days <= MAX_DAYS:
            raise ValidationFailed(f"canary.days must be from 1 hour (1/24) to {MAX_DAYS}", field="canary.days")
        return cls(share=float(share), days=float(days))


def canary_start(
    *,
    agent: Agent,
    proposal: Proposal,
    live: ConfigVersion,
    value: float,
    rollout: Rollout,
    actor: Any,
    rationale: str,
    now: datetime,
) -> Canary:
    """Make ``value`` of the proposal's threshold live for ``rollout.share`` of sessions. Called by
    ``approvals.services.proposal_decide`` inside its transaction, the agent locked and the guard passed (a canary
    counts as a change: the 20 % bound and the changes a cycle)."""
    values = {k: float(v) for k, v in live.values.items()}
    values[proposal.threshold_name] = value
    ends_at = now + timedelta(days=rollout.days)
    version = config_version_add_canary(
        agent=agent,
        values=values,
        now=now,
        reason=f"canary of proposal #{proposal.pk} for {rollout.share:.0%} of sessions, by {actor.get_username()}: "
        f"{rationale}",
        approved_by=actor,
        proposal=proposal,
    )
    canary = Canary.objects.create(
        agent=agent,
        proposal=proposal,
        version=version,
        control=live,
        threshold_name=proposal.threshold_name,
        share=rollout.share,
        started_at=now,
        ends_at=ends_at,
        started_by=actor,
        rationale=rationale,
    )
    audit_record(
        kind=AuditEvent.Kind.CANARY_STARTED,
        agent=agent,
        at=now,
        actor=actor,
        threshold_name=proposal.threshold_name,
        before={proposal.threshold_name: live.values.get(proposal.threshold_name)},
        after={proposal.threshold_name: value},
        proposal=proposal,
        run=proposal.run,
        config_version=version,
        evidence_entry_ids=proposal_evidence_ids(proposal),
        detail={
            "canaryId": canary.pk,
            "version": version.number,
            "controlVersion": live.number,
            "share": rollout.share,
            "endsAt": ends_at.isoformat(),
        },
        message=f"v{version.number} live for {rollout.share:.0%} of sessions until {ends_at:%Y-%m-%d %H:%M} UTC; "
        f"the others stay on v{live.number}",
    )
    outbox_send("notify.canary", canary_id=canary.pk)
    logger.info(
        "canary.started",
        extra={"agent_id": agent.agent_id, "version": version.number, "share": rollout.share, "proposal": proposal.pk},
    )
    return canary


# --- Judging -----------------------------------------------------------------------------------------------------


def canary_arms_assess(*, canary: Canary, now: datetime) -> Assessment:
    """The canary's arm against the control's, over the same days: from its start to now (or its end)."""
    until = min(now, canary.ends_at)
    interval = [(canary.started_at, until)]
    arm = error_counts(agent=canary.agent, intervals=interval, version_pk=canary.version_id)
    control = error_counts(agent=canary.agent, intervals=interval, version_pk=canary.control_id)
    return replace(
        canary_assess(canary=arm, control=control),
        version=canary.version.number,
        baseline_version=canary.control.number,
    )


@dataclass
class Judged:
    """What one watchdog pass did with one canary."""

    canary: Canary
    assessment: Assessment
    outcome: str  # running, promoted, aborted, inconclusive
    version: ConfigVersion | None = None


def canaries_pass(*, now: datetime, agent: Agent | None = None) -> list[Judged]:
    """The watchdog's pass over every running canary (of one agent when given, as a simulation's must)."""
    if agent is not None:
        return canaries_judge(agent=agent, now=now)
    results: list[Judged] = []
    pks = sorted(set(Canary.objects.filter(state=State.RUNNING).values_list("agent_id", flat=True)))
    for one in Agent.objects.filter(pk__in=pks).order_by("pk"):
        results.extend(canaries_judge(agent=one, now=now))
    return results


def canaries_judge(*, agent: Agent, now: datetime) -> list[Judged]:
    """The watchdog's pass over the agent's running canaries: abort the worse, promote the not-worse, and call
    it inconclusive when time ran out. Inconclusive canaries are left to an approver."""
    results: list[Judged] = []
    # Every hourly pass asks, and an agent mostly has no canary: the ids first (compiling the wide joined row
    # cost ten times the read), the canaries themselves only when there are some.
    ids = [pk for (pk,) in _running_canaries().rows(agent=agent.pk)]
    if not ids:
        return results
    running = Canary.objects.filter(pk__in=ids, state=State.RUNNING).select_related(
        "agent", "version", "control", "proposal"
    )
    for canary in running:
        assessment = canary_arms_assess(canary=canary, now=now)
        Canary.objects.filter(pk=canary.pk, state=State.RUNNING).update(
            assessment=assessment.as_json(), assessed_at=now
        )
        version = None
        outcome: str
        if assessment.verdict == "rollback":
            version = canary_abort(canary=canary, now=now, assessment=assessment)
            outcome = State.ABORTED if version is not None else State.RUNNING
        elif assessment.verdict == "good":
            version = canary_promote(canary=canary, now=now, assessment=assessment)
            outcome = State.PROMOTED if version is not None else State.RUNNING
        elif now >= canary.ends_at:
            outcome = _inconclusive(canary=canary, assessment=assessment, now=now)
        else:
            outcome = State.RUNNING
        logger.info(
            "canary.assessed",
            extra={"agent_id": agent.agent_id, "version": canary.version.number, "verdict": assessment.verdict},
        )
        results.append(Judged(canary, assessment, str(outcome), version))
    return results


@compiled(Canary)
def _running_canaries() -> QuerySet[Canary, Any]:
    """The ids of ``agent``'s running canaries, compiled once (``loopsite.compiled``): every hourly pass asks."""
    return (
        Canary.objects.filter(agent_id=Param("agent", Canary._meta.get_field("agent")), state=State.RUNNING)
        .order_by()
        .values_list("pk")
    )


def _inconclusive(*, canary: Canary, assessment: Assessment, now: datetime) -> str:
    with transaction.atomic():
        agent_lock(canary.agent)
        done = Canary.objects.filter(pk=canary.pk, state=State.RUNNING).update(
            state=State.INCONCLUSIVE, assessment=assessment.as_json(), assessed_at=now
        )
        if not done:
            return str(Canary.objects.get(pk=canary.pk).state)
        audit_record(
            kind=AuditEvent.Kind.CANARY_INCONCLUSIVE,
            agent=canary.agent,
            at=now,
            actor_label="watchdog",
            threshold_name=canary.threshold_name,
            proposal=canary.proposal,
            run=canary.proposal.run,
            config_version=canary.version,
            detail={"canaryId": canary.pk, "version": canary.version.number, "assessment": assessment.as_json()},
            message=f"time ran out without a verdict; it keeps serving until an approver promotes or aborts it: "
            f"{assessment.explain()}",
        )
        outbox_send("notify.canary", canary_id=canary.pk)
    return State.INCONCLUSIVE


# --- Ending ------------------------------------------------------------------------------------------------------


def _claim(canary: Canary, *, actor: Any, verb: str) -> tuple[Agent, Canary] | None:
    """Lock the agent, then the canary; None when it no longer serves (another pass or person ended it). By hand,
    the actor must be an approver of the agent who did not propose the change."""
    agent = agent_lock(canary.agent)
    if actor is not None:
        approver_check(actor, JUDGE, agent=agent)
        if canary.proposal.created_by_id is not None and canary.proposal.created_by_id == actor.pk:
            raise SelfApprovalError(f"you proposed this change; another approver must {verb} its canary")
    locked = (
        Canary.objects.select_for_update(of=("self",))
        .select_related("agent", "version", "control", "proposal", "proposal__run")
        .get(pk=canary.pk)
    )
    if not locked.serving:
        if actor is not None:
            raise CanaryClosed(f"the canary v{locked.version.number} was {locked.state} already")
        return None
    return agent, locked


def _close(
    canary: Canary, *, state: str, actor: Any, label: str, rationale: str, result: ConfigVersion, now: datetime
) -> None:
    Canary.objects.filter(pk=canary.pk).update(
        state=state,
        ended_at=now,
        ended_by=actor,
        ended_label=label,
        end_rationale=rationale,
        result=result,
    )
    ConfigVersion.objects.filter(pk=canary.version_id).update(superseded_at=now)


def canary_promote(
    *, canary: Canary, now: datetime, assessment: Assessment | None = None, actor: Any = None, rationale: str = ""
) -> ConfigVersion | None:
    """The canary's values live for everyone: a new live version of the proposal, audited and notified. By the
    watchdog (``assessment`` says why) or by an approver. None when it no longer serves (watchdog only)."""
    text = rationale_check(rationale) if actor is not None else ""
    with transaction.atomic():
        claimed = _claim(canary, actor=actor, verb="promote")
        if claimed is None:
            return None
        agent, locked = claimed
        if assessment is None:
            assessment = canary_arms_assess(canary=locked, now=now)
        label = actor.get_username() if actor is not None else "watchdog"
        why = text if actor is not None else f"not worse than the control: {assessment.explain()}"
        live = ConfigVersion.objects.get(agent=agent, is_live=True)
        proposal = locked.proposal
        value = float(locked.version.values[locked.threshold_name])
        version = config_version_activate(
            agent=agent,
            values={k: float(v) for k, v in locked.version.values.items()},
            source=ConfigVersion.Source.PROPOSAL,
            now=now,
            reason=f"canary v{locked.version.number} of proposal #{proposal.pk} promoted by {label}: {why}",
            approved_by=actor if actor is not None else locked.started_by,
            proposal=proposal,
        )
        _close(locked, state=State.PROMOTED, actor=actor, label=label, rationale=text, result=version, now=now)
        modified = abs(value - float(proposal.proposed_value)) > 1e-12
        Proposal.objects.filter(pk=proposal.pk).update(
            status=Proposal.Status.MODIFIED if modified else Proposal.Status.ACCEPTED
        )
        if actor is None:
            # Judged by the concurrent comparison already: the before/after watch would only re-ask it, and could
            # blame the change for whatever else moved since.
            VersionWatch.objects.create(
                agent=agent,
                version=version,
                state=VersionWatch.State.GOOD,
                watch_until=now,
                judged_at=now,
                judged_label="watchdog (canary)",
                assessment=assessment.as_json(),
                assessed_at=now,
                baseline=locked.control,
                rationale=f"promoted from canary v{locked.version.number}",
            )
        evidence = proposal_evidence_ids(proposal)
        detail = {
            "canaryId": locked.pk,
            "canaryVersion": locked.version.number,
            "controlVersion": locked.control.number,
            "version": version.number,
            "share": locked.share,
            "manual": actor is not None,
            "assessment": assessment.as_json(),
        }
        audit_record(
            kind=AuditEvent.Kind.CANARY_PROMOTED,
            agent=agent,
            at=now,
            actor=actor,
            actor_label=label,
            threshold_name=locked.threshold_name,
            before={locked.threshold_name: live.values.get(locked.threshold_name)},
            after={locked.threshold_name: value},
            proposal=proposal,
            run=proposal.run,
            config_version=version,
            evidence_entry_ids=evidence,
            detail=detail,
            message=why,
        )
        audit_record(
            kind=AuditEvent.Kind.CONFIG_ACTIVATED,
            agent=agent,
            at=now,
            actor=actor,
            actor_label=label,
            threshold_name=locked.threshold_name,
            before=live.values,
            after=version.values,
            proposal=proposal,
            run=proposal.run,
            config_version=version,
            evidence_entry_ids=evidence,
            detail={"version": version.number, "previousVersion": live.number, "source": version.source},
            message=f"v{version.number} live (was v{live.number}), promoted from canary v{locked.version.number}",
        )
        outbox_send("notify.canary", canary_id=locked.pk)
    logger.info("canary.promoted", extra={"agent_id": agent.agent_id, "version": version.number, "by": label})
    return version


def canary_abort(
    *, canary: Canary, now: datetime, assessment: Assessment | None = None, actor: Any = None, rationale: str = ""
) -> ConfigVersion | None:
    """Back to the control's values for every session: a rollback version undoing the canary's, audited and
    notified. By the watchdog (``assessment`` says why) or by an approver. None when it no longer serves."""
    text = rationale_check(rationale) if actor is not None else ""
    with transaction.atomic():
        claimed = _claim(canary, actor=actor, verb="abort")
        if claimed is None:
            return None
        agent, locked = claimed
        if assessment is None:
            assessment = canary_arms_assess(canary=locked, now=now)
        label = actor.get_username() if actor is not None else "watchdog"
        why = text if actor is not None else f"worse than the control: {assessment.explain()}"
        live = ConfigVersion.objects.get(agent=agent, is_live=True)
        # Closed first, so the rollback below is not taken for one made while the canary serves.
        Canary.objects.filter(pk=locked.pk).update(state=State.ABORTED)
        version = config_version_activate(
            agent=agent,
            values={k: float(v) for k, v in live.values.items()},
            source=ConfigVersion.Source.ROLLBACK,
            now=now,
            reason=f"canary v{locked.version.number} aborted by {label}: {why}",
            approved_by=actor,
            rolled_back_version=locked.version,
        )
        _close(locked, state=State.ABORTED, actor=actor, label=label, rationale=text, result=version, now=now)
        _proposal_rolled_back(locked.proposal, now=now)
        detail = {
            "canaryId": locked.pk,
            "canaryVersion": locked.version.number,
            "controlVersion": locked.control.number,
            "fromVersion": locked.version.number,
            "toVersion": live.number,
            "version": version.number,
            "manual": actor is not None,
            "assessment": assessment.as_json(),
        }
        for kind in (AuditEvent.Kind.CANARY_ABORTED, AuditEvent.Kind.CONFIG_ROLLED_BACK):
            audit_record(
                kind=kind,
                agent=agent,
                at=now,
                actor=actor,
                actor_label=label,
                threshold_name=locked.threshold_name,
                before=locked.version.values,
                after=version.values,
                proposal=locked.proposal,
                run=locked.proposal.run,
                config_version=version,
                detail=detail,
                message=why,
            )
        outbox_send("notify.canary", canary_id=locked.pk)
    logger.warning("canary.aborted", extra={"agent_id": agent.agent_id, "version": version.number, "by": label})
    return version


def _proposal_rolled_back(proposal: Proposal, *, now: datetime) -> None:
    Proposal.objects.filter(pk=proposal.pk, status=Proposal.Status.CANARY).update(
        status=Proposal.Status.ROLLED_BACK, rolled_back_at=now
    )


def canary_end_by_rollback(*, agent: Agent, rollback: ConfigVersion, now: datetime) -> None:
    """A rollback made while a canary serves (by hand, or the watchdog undoing an earlier change) moves the control
    under it: the canary is aborted with it, audited. Called by ``config_version_activate`` for every rollback."""
    serving = (
        Canary.objects.select_for_update(of=("self",))
        .filter(agent=agent, state__in=Canary.SERVING)
        .select_related("version", "proposal", "proposal__run")
        .first()
    )
    if serving is None:
        return
    rationale = f"the live config was rolled back (v{rollback.number}) while it served"
    _close(serving, state=State.ABORTED, actor=None, label="rollback", rationale=rationale, result=rollback, now=now)
    _proposal_rolled_back(serving.proposal, now=now)
    audit_record(
        kind=AuditEvent.Kind.CANARY_ABORTED,
        agent=agent,
        at=now,
        actor_label="rollback",
        threshold_name=serving.threshold_name,
        proposal=serving.proposal,
        run=serving.proposal.run,
        config_version=rollback,
        detail={"canaryId": serving.pk, "canaryVersion": serving.version.number, "version": rollback.number},
        message=rationale,
    )
    outbox_send("notify.canary", canary_id=serving.pk)
