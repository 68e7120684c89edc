"""Helpers for the queue pages: decisions logged through the real service, timestamps relative to now."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from auditlog.models import Decision
from auditlog.services import decision_log
from tests.factories import entry

HX = {"HX-Request": "true"}  # what htmx sends; without it the respond view redirects (no-JavaScript path)


def signed_in(user: Any) -> Client:
    """A test client with ``user`` signed in."""
    client = Client()
    client.force_login(user)
    return client


def log_pending(
    agent_id: str = "triage",
    count: int = 3,
    *,
    now: datetime | None = None,
    minutes_apart: int = 1,
    ago: timedelta = timedelta(hours=1),
    **overrides: Any,
) -> list[str]:
    """Log ``count`` queued decisions, oldest first, ``minutes_apart`` apart, the newest ``ago`` before now."""
    now = now or timezone.now()
    ids = []
    for i in range(count):
        stamp = now - ago - timedelta(minutes=minutes_apart * (count - 1 - i))
        body = entry(agent_id, timestamp=stamp.isoformat(), **overrides)
        body["id"] = f"{agent_id}-{i:03d}-{body['id'][:8]}"
        _status, decision = decision_log(raw=body, now=now)
        assert decision.queued
        ids.append(decision.entry_id)
    return ids


def stored(entry_id: str) -> Decision:
    return Decision.objects.get(entry_id=entry_id)


@pytest.fixture
def pending(agent: Any) -> list[str]:
    return log_pending(agent.agent_id, 3)
