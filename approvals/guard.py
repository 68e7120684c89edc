"""The one guard every new live threshold value passes (contract rules 3 and 11), whoever asks.

Within an agent's cycle (the ISO week in its timezone, ``thresholds.cycles``):

- at most ``MAX_PROPOSALS_PER_CYCLE`` config versions made live from proposals (rollbacks restore and are exempt);
- no threshold further than ``MAX_MOVE_FRACTION`` from its value *at the cycle's start*, so stacked changes
  cannot walk a threshold past the bound one 20 % step at a time;
- always within the threshold's own min/max;
- nothing at all while the agent's config is locked.

``change_check`` is called by every path that makes a value live or proposes one: accepting or modifying a
proposal (page, admin, API, simulation), a hand-made proposal. Callers hold ``agent_lock`` first, so two
approvers accepting at once on PostgreSQL are serialised on the agent row and the second one sees the first
one's change; a lock racing an accept likewise.

``approver_check`` is the other guard here: who may decide an agent's proposals, lock or unlock its config, roll it
back or judge a watched change of it. Every such path calls it after ``agent_lock``, so an edit of the agent's
designated approvers (which writes the agent row) and a decision take turns.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

from approvals.exceptions import (
    AgentLocked,
    CanaryServing,
    GuardrailViolation,
    NotADesignatedApprover,
    NotAnApprover,
)
from loopsite.exceptions import ValidationFailed
from loopsite.rules import rule
from people.roles import is_admin, is_approver
from thresholds.cycles import cycle_monday, cycle_start
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition

# Float noise: 0.6 * 1.2 is 0.72 on paper and 0.7199999999999999 in binary.
EPS = 1e-9


def rationale_check(text: Any, field: str = "rationale") -> str:
    """Every decision on a change says why: required, at most 4,000 characters."""
    value = str(text or "").strip()
    if not value:
        raise ValidationFailed(f"{field} is required", field=field)
    if len(value) > 4000:
        raise ValidationFailed(f"{field} is longer than 4,000 characters", field=field)
    return value


# What approver_check guards, as its refusals name it.
DECIDE = "decide proposals"
ROLL_BACK = "roll back configs"
LOCK = "lock an agent's config"
UNLOCK = "unlock an agent's config"
JUDGE = "judge a watched change"


def approver_refusal(actor: Any, verb: str, *, agent: Agent) -> NotAnApprover | None:
    """Why ``actor`` may not ``verb`` for ``agent``, or None when they may. Pages use it to hide what would be
    refused, with the same sentence the refusal carries."""
    who = str(getattr(actor, "username", "") or "someone")
    if not is_approver(actor):
        return NotAnApprover(f"{who} is not an approver; only approvers {verb}")
    if is_admin(actor):
        return None
    designated = sorted(agent.approvers.values_list("username", flat=True))
    if designated and who not in designated:
        return NotADesignatedApprover(
            f"{who} is not one of {agent.agent_id}'s designated approvers ({', '.join(designated)}); for "
            f"{agent.agent_id}, only they and admins {verb}"
        )
    return None


def agents_in_scope(user: Any) -> QuerySet[Agent]:
    """The agents whose proposals ``user`` may decide: every agent for an admin; for an approver those that
    designate them and those that designate nobody (the queryset form of ``approver_refusal``); none otherwise."""
    if is_admin(user):
        return Agent.objects.all()
    if not is_approver(user):
        return Agent.objects.none()
    return Agent.objects.filter(Q(approvers=user) | Q(approvers__isnull=True)).distinct()


def scope_note(user: Any, verb: str, *, agent: Agent) -> str:
    """The sentence a page shows an approver who is not one of the agent's designated approvers, in place of the
    controls the guard would refuse them; empty when they may use them (or are no approver at all)."""
    refusal = approver_refusal(user, verb, agent=agent)
    return f"{refusal.message}." if isinstance(refusal, NotADesignatedApprover) else ""


def approver_check(actor: Any, verb: str, *, agent: Agent) -> None:
    """Only approvers (and admins) ``verb``: decide proposals, roll back, lock, judge a watched change. When the
    agent has designated approvers, only they (and admins) do. Call it after ``agent_lock``."""
    refusal = approver_refusal(actor, verb, agent=agent)
    if refusal is not None:
        raise refusal


def designation_check(*, approvers: list[Any], required: int) -> None:
    """An agent's designated approvers must be approvers, and it cannot require more distinct approvals than it
    has designated approvers (with none designated, any approvers count)."""
    if isinstance(required, bool) or not isinstance(required, int) or required < 1:
        raise ValidationFailed("required approvals must be a whole number, 1 or more", field="requiredApprovals")
    for user in approvers:
        if not is_approver(user):
            raise ValidationFailed(f"{user.username!r} is not an approver", field="approvers")
    designated = len({user.pk for user in approvers})
    if designated and required > designated:
        raise ValidationFailed(
            f"{required} approvals cannot be required of {designated} designated approver"
            f"{'s' if designated != 1 else ''}: designate at least {required}, or require at most {designated}",
            field="requiredApprovals",
        )


def agent_lock(agent: Agent) -> Agent:
    """Lock the agent's row for the rest of the transaction; every change of its config takes this first."""
    return Agent.objects.select_for_update().get(pk=agent.pk)


@dataclass(frozen=True)
class CycleState:
    """What the guard needs to know about the agent's current cycle."""

    cycle: date
    started_at: datetime
    base_values: dict[str, float]  # the live values at the cycle's start
    changes: int  # versions made live from proposals since the cycle's start

    @property
    def next_cycle(self) -> date:
        return self.cycle + timedelta(weeks=1)


def cycle_state(*, agent: Agent, now: datetime) -> CycleState:
    start = cycle_start(agent=agent, now=now)
    versions = ConfigVersion.objects.filter(agent=agent)
    # The version live just before the cycle's start (a change made live at its first instant is this cycle's, so
    # it is counted and is not the base the moves are measured from); an agent registered during the cycle starts
    # from its first version.
    base = versions.filter(activated_at__lt=start).order_by("-number").first() or versions.order_by("number").first()
    # A change is a proposal made live, for everyone or as a canary; a canary promoted in the same cycle is one.
    this_cycle = versions.filter(activated_at__gte=start)
    made_live = this_cycle.filter(source=ConfigVersion.Source.PROPOSAL)
    canaries = this_cycle.filter(source=ConfigVersion.Source.CANARY)
    promoted = made_live.filter(proposal_id__in=canaries.values("proposal_id")).count()
    changes = made_live.count() + canaries.count() - promoted
    return CycleState(
        cycle=cycle_monday(agent=agent, now=now),
        started_at=start,
        base_values={k: float(v) for k, v in (base.values if base is not None else {}).items()},
        changes=changes,
    )


def _range(base: float, definition: ThresholdDefinition) -> tuple[float, float]:
    step = abs(base) * float(rule("MAX_MOVE_FRACTION"))
    return max(definition.min_value, base - step), min(definition.max_value, base + step)


def _definition(agent: Agent, threshold_name: str, field: str) -> ThresholdDefinition:
    try:
        return ThresholdDefinition.objects.get(agent=agent, name=threshold_name)
    except ThresholdDefinition.DoesNotExist:
        raise ValidationFailed(f"{agent.agent_id} has no threshold {threshold_name!r}", field=field) from None


@dataclass(frozen=True)
class Allowance:
    """What one threshold may still do this cycle, as the approval page and the tuner show it."""

    low: float
    high: float
    base: float  # its value at the cycle's start
    cycle: date
    changes_left: int
    locked: bool


def _allowance(agent: Agent, definition: ThresholdDefinition, state: CycleState) -> Allowance:
    base = state.base_values.get(definition.name, definition.min_value)
    low, high = _range(base, definition)
    return Allowance(low, high, base, state.cycle, _changes_left(state), agent.is_locked)


def allowance(*, agent: Agent, threshold_name: str, now: datetime) -> Allowance:
    return _allowance(agent, _definition(agent, threshold_name, "thresholdName"), cycle_state(agent=agent, now=now))


def allowances(
    *, agent: Agent, now: datetime, definitions: Iterable[ThresholdDefinition] | None = None
) -> dict[str, Allowance]:
    """``allowance`` of every threshold of the agent (``definitions``, when the caller has read them), by name,
    reading the cycle's state once: the tuner and the new-proposal page show them all."""
    state = cycle_state(agent=agent, now=now)
    if definitions is None:
        definitions = ThresholdDefinition.objects.filter(agent=agent)
    return {d.name: _allowance(agent, d, state) for d in definitions}


def allowed_range(*, agent: Agent, threshold_name: str, now: datetime) -> tuple[float, float]:
    """The values ``threshold_name`` may take this cycle: within 20 % of its value at the cycle's start and
    within its min/max."""
    a = allowance(agent=agent, threshold_name=threshold_name, now=now)
    return a.low, a.high


def changes_left(*, agent: Agent, now: datetime) -> int:
    """How many more changes from proposals may go live this cycle."""
    return _changes_left(cycle_state(agent=agent, now=now))


def _changes_left(state: CycleState) -> int:
    return max(0, int(rule("MAX_PROPOSALS_PER_CYCLE")) - state.changes)


def canary_check(agent: Agent) -> None:
    """No change of an agent goes live (for everyone or as another canary) while one of its canaries serves: its
    arms are compared against the control, which must stay still. Rollbacks are exempt (they abort it)."""
    from rollouts.models import Canary

    serving = Canary.objects.filter(agent=agent, state__in=Canary.SERVING).select_related("version").first()
    if serving is not None:
        raise CanaryServing(
            f"{agent.agent_id} has a canary serving (v{serving.version.number}, {serving.threshold_name} for "
            f"{serving.share:.0%} of sessions, {serving.state}); promote or abort it before another change",
            field="agentId",
        )


def change_check(*, agent: Agent, threshold_name: str, value: object, now: datetime, field: str = "value") -> float:
    """The value as a float when it may go live now, else a 4xx naming the rule and what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationFailed(f"{field} must be a finite number", field=field)
    if agent.is_locked:
        by = agent.locked_by.username if agent.locked_by is not None else "an approver"
        raise AgentLocked(
            f"{agent.agent_id}'s config is locked (by {by}: {agent.lock_rationale}); only a rollback changes it "
            "until it is unlocked",
            field="agentId",
        )
    canary_check(agent)
    definition = _definition(agent, threshold_name, "thresholdName")
    value = float(value)
    if value < definition.min_value - EPS:
        raise GuardrailViolation(
            f"{field} {value:g} is below {threshold_name}'s minimum {definition.min_value:g}", field=field
        )
    if value > definition.max_value + EPS:
        raise GuardrailViolation(
            f"{field} {value:g} is above {threshold_name}'s maximum {definition.max_value:g}", field=field
        )
    state = cycle_state(agent=agent, now=now)
    cap = int(rule("MAX_PROPOSALS_PER_CYCLE"))
    if state.changes >= cap:
        raise GuardrailViolation(
            f"{agent.agent_id} has had {state.changes} changes from proposals go live this cycle (the week of "
            f"{state.cycle:%Y-%m-%d}); at most {cap} a cycle. The next may go live from {state.next_cycle:%Y-%m-%d}.",
            field=field,
        )
    base = state.base_values.get(threshold_name)
    if base is None:
        raise ValidationFailed(f"the live config has no {threshold_name!r}", field="thresholdName")
    fraction = float(rule("MAX_MOVE_FRACTION"))
    if abs(value - base) > abs(base) * fraction + EPS:
        lo, hi = _range(base, definition)
        raise GuardrailViolation(
            f"{field} {value:g} is more than {fraction:.0%} from {base:g}, {threshold_name}'s value at the start of "
            f"this cycle (the week of {state.cycle:%Y-%m-%d}); this cycle allows {lo:.4g} to {hi:.4g}",
            field=field,
        )
    return value
