"""Helpers for the rollouts tests: decisions logged through the real ingest, naming the arm they ran under."""

from datetime import datetime, timedelta
from typing import Any

from auditlog.services import decision_log_batch
from rollouts.arms import in_canary
from tests.approvals.conftest import iso
from tests.factories import entry
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


def log_under(
    agent: Agent,
    version: ConfigVersion,
    *,
    prefix: str,
    n: int,
    errors: int,
    start: datetime,
    sessions: list[str],
    step: timedelta = timedelta(minutes=3),
    confidence: float = 0.7,
    respond: bool = True,
    extra: dict[str, Any] | None = None,
) -> list[str]:
    """``n`` flagged decisions logged under ``version`` (named in configVersion, its own flag_threshold value), each
    answered (``errors`` of them dismissed, spread evenly) when ``respond``."""
    bodies: list[object] = []
    last = start
    for i in range(n):
        stamp = start + i * step
        last = stamp
        is_err = errors and (i * errors) // n != ((i + 1) * errors) // n
        body = entry(
            agent.agent_id,
            id=f"{prefix}-{i:04d}",
            timestamp=iso(stamp),
            sessionId=sessions[i % len(sessions)],
            configVersion=version.number,
            decision={
                "confidence": confidence,
                "thresholdName": "flag_threshold",
                "thresholdUsed": float(version.values["flag_threshold"]),
                **(extra or {}),
            },
        )
        if respond:
            body["humanResponse"] = {
                "action": "dismiss" if is_err else "approve",
                "respondedAt": iso(stamp + timedelta(minutes=30)),
                "responderId": "rita",
            }
        bodies.append(body)
    results = decision_log_batch(entries=bodies, now=last + timedelta(hours=1))
    assert all(r.status == "created" for r in results), [r.as_dict() for r in results if r.status != "created"][:3]
    return [str(b["id"]) for b in bodies]  # type: ignore[index]


# The approval pages' Chromium context (tests/approvals/conftest.py), for the proposal page's canary card.
from tests.approvals.conftest import browser_context  # noqa: E402, F401
