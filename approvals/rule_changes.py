"""Engineers own the rules the tuner is judged by (contract rule 9): every change to them is an audit event.

An agent's rules are its review sample rate, binary and rule-based modes, timezone, tuner window, objective, miss
cost, designated approvers and required approvals, and each threshold's bounds, rule name and score feature. Whatever
path edits them (the admin, ``approvals.services.agent_approvers_set``), it takes ``rules_snapshot`` before, saves,
and calls ``rule_changes_record`` in the same transaction: one ``rules.changed`` row with what changed, before and
after.
"""

from datetime import datetime
from typing import Any

from approvals.audit import audit_record
from approvals.models import AuditEvent
from thresholds.models import Agent, ThresholdDefinition

AGENT_RULES = (
    ("review_sample_rate", "reviewSampleRate"),
    ("binary_mode", "binaryMode"),
    ("rule_based", "ruleBased"),
    ("timezone", "timezone"),
    ("window_weeks", "windowWeeks"),
    ("objective", "objective"),
    ("miss_cost", "missCost"),
    ("required_approvals", "requiredApprovals"),
)
THRESHOLD_RULES = (("min_value", "min"), ("max_value", "max"), ("rule", "rule"), ("score_feature", "scoreFeature"))


def rules_snapshot(agent: Agent) -> dict[str, Any]:
    """The agent's rules as stored now (read from the database, not from an object being edited)."""
    stored = Agent.objects.get(pk=agent.pk)
    snapshot: dict[str, Any] = {key: getattr(stored, field) for field, key in AGENT_RULES}
    snapshot["approvers"] = sorted(stored.approvers.values_list("username", flat=True))
    for definition in ThresholdDefinition.objects.filter(agent=stored).order_by("name"):
        for field, key in THRESHOLD_RULES:
            snapshot[f"{definition.name}.{key}"] = getattr(definition, field)
    return snapshot


def rule_changes_record(
    *, agent: Agent, before: dict[str, Any], actor: Any, at: datetime, via: str, actor_label: str = ""
) -> Any:
    """The ``rules.changed`` event for what differs from ``before``, or None when nothing does. Without a user,
    ``actor_label`` says who (e.g. a command)."""
    after = rules_snapshot(agent)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if not changed:
        return None
    return audit_record(
        kind=AuditEvent.Kind.RULES_CHANGED,
        agent=agent,
        at=at,
        actor=actor,
        actor_label=actor_label,
        before={k: before.get(k) for k in changed},
        after={k: after.get(k) for k in changed},
        detail={"via": via},
        message=f"{', '.join(changed)} changed ({via})",
    )
