"""Helpers for the rollouts tests: decisions logged through the real ingest, naming the arm they ran under."""

from datetime import timedelta
from typing import Any

from rollouts.arms import in_canary
from tests.approvals.conftest import log_responded
from thresholds.models import Agent, ConfigVersion


def sessions_of(arm: str, *, share: float, version: int, n: int, prefix: str = "s") -> list[str]:
    """``n`` session ids the shared hash puts in ``arm`` ("canary" or "control") of canary ``version``."""
    found: list[str] = []
    i = 0
    while len(found) < n:
        session = f"{prefix}-{i}"
        if in_canary(session, share=share, version=version) == (arm == "canary"):
            found.append(session)
        i += 1
    return found


def log_under(agent: Agent, version: ConfigVersion, *, sessions: list[str], **kwargs: Any) -> list[str]:
    """Answered flagged decisions logged under ``version`` (one arm of a canary), every 3 minutes, by the approval
    tests' ``log_responded``."""
    return log_responded(agent, version=version, sessions=sessions, step=timedelta(minutes=3), **kwargs)


# The approval pages' Chromium context (tests/approvals/conftest.py), for the proposal page's canary card.
from tests.approvals.conftest import browser_context  # noqa: E402, F401
