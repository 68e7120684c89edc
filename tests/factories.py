"""Factories for the tests. Agents go through the real service so they get thresholds, a live version and a key."""

import uuid
from datetime import UTC, datetime
from typing import Any

import factory
from django.contrib.auth import get_user_model

from people.roles import Role, role_groups_ensure
from thresholds.models import Agent
from thresholds.selectors import config_get_live
from thresholds.services import agent_create
from tuner.models import Proposal, ProposalEvidence, TunerRun

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @classmethod
    def _after_postgeneration(cls, instance: Any, create: bool, results: Any = None) -> None:
        if create:
            instance.save()


def user_with_role(role: Role | str, username: str | None = None, **kwargs: Any) -> Any:
    role = Role(role)
    user: Any = UserFactory(username=username or f"{role.value}-{uuid.uuid4().hex[:6]}", **kwargs)
    if role is Role.ADMIN:
        user.is_staff = user.is_superuser = True
        user.save()
    else:
        user.groups.add(role_groups_ensure()[role])
    return user


def make_agent(
    agent_id: str = "triage",
    *,
    actions: list[str] | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    now: datetime = NOW,
    **options: Any,
) -> tuple[Agent, str]:
    return agent_create(
        agent_id=agent_id,
        actions=actions or ["auto-resolve", "flag", "escalate"],
        thresholds=thresholds
        or [
            {"name": "flag_threshold", "value": 0.6, "action": "flag"},
            {"name": "escalate_threshold", "value": 0.85, "action": "escalate"},
        ],
        now=now,
        **options,
    )


def entry(agent_id: str = "triage", **overrides: Any) -> dict[str, Any]:
    """A valid ActionLogEntry body in the seed's shape."""
    body: dict[str, Any] = {
        "id": overrides.pop("id", str(uuid.uuid4())),
        "timestamp": overrides.pop("timestamp", "2026-03-02T08:00:00Z"),
        "agentId": agent_id,
        "sessionId": overrides.pop("sessionId", "session-1"),
        "decision": {
            "action": "flag",
            "confidence": 0.72,
            "thresholdUsed": 0.6,
            "reasoning": "amount far above the customer's average",
        },
        "context": {
            "inputHash": "sha256:abc",
            "features": {"amount_z": 3.2, "night": 1.0},
            "matchedRules": ["high_amount"],
        },
    }
    body["decision"].update(overrides.pop("decision", {}))
    body["context"].update(overrides.pop("context", {}))
    body.update(overrides)
    return body


def make_proposal(
    agent: Agent,
    *,
    threshold: str = "flag_threshold",
    proposed: float = 0.66,
    current: float | None = None,
    created_by: Any = None,
    run: TunerRun | None = None,
    evidence_ids: list[str] | None = None,
    risk_flagged: bool = False,
    now: datetime = NOW,
    rank: int = 1,
) -> Proposal:
    """A pending proposal as the tuner would store it; ``current`` defaults to the live value."""
    current = config_get_live(agent=agent).thresholds[threshold] if current is None else current
    evidence_ids = evidence_ids or []
    proposal = Proposal.objects.create(
        agent=agent,
        run=run,
        rank=rank,
        threshold_name=threshold,
        current_value=current,
        proposed_value=proposed,
        direction="increase" if proposed > current else "decrease",
        confidence="high",
        expected_impact="Replayed over the window: false alarms -12 (40% of today's), missed signals +0",
        impact={"falseAlarmChange": -12, "falseAlarmInterval": [-16, -8], "missChange": 0, "missInterval": [0, 1]},
        evidence_count=len(evidence_ids),
        sample_entry_ids=evidence_ids[:5],
        risk_assessment=(
            "RISK: may raise missed signals: the replay loses 1 case reviewers escalated"
            if risk_flagged
            else "No replayed rise in missed signals."
        ),
        risk_flagged=risk_flagged,
        created_by=created_by,
        created_at=now,
    )
    ProposalEvidence.objects.bulk_create(
        [
            ProposalEvidence(proposal=proposal, entry_id=i, kind="dismiss", is_sample=n < 5)
            for n, i in enumerate(evidence_ids)
        ]
    )
    return proposal
