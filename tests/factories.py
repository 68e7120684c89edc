"""Factories for the tests. Agents go through the real service so they get thresholds, a live version and a key."""

import uuid
from datetime import UTC, datetime
from typing import Any

import factory
from django.contrib.auth import get_user_model

from people.roles import Role, role_groups_ensure
from thresholds.models import Agent
from thresholds.services import agent_create

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
