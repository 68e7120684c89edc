"""Helpers for the approval gate's tests: proposals made by a small factory, decisions logged through the
real decision-log service (with their responses imported), so the gate and the watchdog see real rows."""

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from auditlog.services import decision_log_batch
from tests.factories import NOW, entry, user_with_role
from thresholds.models import Agent, ConfigVersion
from tuner.models import TunerRun


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def audit_history(agent: Any, approver: Any, approver2: Any) -> list[Any]:
    """flag_threshold accepted, escalate_threshold rejected, then a manual rollback of the flag change; the agent's
    audit rows in the order they were written."""
    from approvals.models import AuditEvent
    from approvals.services import config_rollback, proposal_decide
    from tests.factories import make_proposal

    proposal_decide(
        proposal=make_proposal(agent, proposed=0.66), actor=approver, decision="accept", rationale="a", now=NOW
    )
    proposal_decide(
        proposal=make_proposal(agent, threshold="escalate_threshold", proposed=0.8),
        actor=approver,
        decision="reject",
        rationale="b",
        now=NOW,
    )
    config_rollback(agent=agent, to_version=1, actor=approver2, reason="c", now=NOW)
    return list(AuditEvent.objects.filter(agent=agent).order_by("id"))


def log_responded(
    agent: Agent,
    *,
    prefix: str,
    n: int,
    errors: int,
    start: datetime,
    step: timedelta = timedelta(minutes=7),
    threshold: str = "flag_threshold",
    confidence: float = 0.7,
    error_action: str = "dismiss",
    version: ConfigVersion | None = None,
    sessions: list[str] | None = None,
) -> list[str]:
    """``n`` decisions under the live version from ``start``, each with a response; ``errors`` of them errors,
    spread evenly. Returns their ids. With ``version``, they name it in configVersion, with its value of the
    threshold (a canary's arm); with ``sessions``, they take those session ids in turn."""
    bodies: list[object] = []
    ids: list[str] = []
    last = start
    for i in range(n):
        stamp = start + i * step
        last = stamp
        # Spread the errors through the run, so no time slice is all errors.
        is_err = errors and (i * errors) // n != ((i + 1) * errors) // n
        decision: dict[str, Any] = {
            "confidence": confidence,
            "thresholdName": threshold,
            "reasoning": f"case {prefix} {i}",
        }
        named: dict[str, Any] = {}
        if version is not None:
            decision["thresholdUsed"] = float(version.values[threshold])
            named["configVersion"] = version.number
        body = entry(
            agent.agent_id,
            id=f"{prefix}-{i:04d}",
            timestamp=iso(stamp),
            sessionId=sessions[i % len(sessions)] if sessions else "session-1",
            decision=decision,
            **named,
            humanResponse={
                "action": error_action if is_err else "approve",
                "respondedAt": iso(stamp + timedelta(minutes=30)),
                "responderId": "rita",
                "note": f"note on {prefix}-{i}",
            },
        )
        bodies.append(body)
        ids.append(body["id"])
    results = decision_log_batch(entries=bodies, now=last + timedelta(hours=1))
    assert all(r.status == "created" for r in results), [r for r in results if r.status != "created"][:3]
    return ids


def make_run(agent: Agent, *, now: datetime = NOW) -> TunerRun:
    return TunerRun.objects.create(
        agent=agent,
        cycle=now.date() - timedelta(days=now.weekday()),
        status=TunerRun.Status.DONE,
        window_start=now - timedelta(weeks=4),
        window_end=now,
        output={"proposals": [], "summary": "dismissals cluster above 0.6", "systemHealth": "needs-attention"},
        created_at=now,
        finished_at=now,
    )


def at_once(*calls: Any) -> list[Any]:
    """Run each call in a thread of its own, all released at once; their results (or exceptions), in order. For
    races on PostgreSQL: each thread closes its own connection."""
    start = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            start.wait(timeout=10)
            outcomes[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - asserted by the caller
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcomes


@pytest.fixture
def approver2(db: None) -> Any:
    return user_with_role("approver", username="bob")


@pytest.fixture
def designated(agent: Agent, approver: Any, approver2: Any) -> list[Any]:
    """alice and bob are the agent's designated approvers (emails alice@/bob@example.com)."""
    agent.approvers.add(approver, approver2)
    return [approver, approver2]


@pytest.fixture
def browser_context(chromium: Any, live_server: Any) -> Iterator[Any]:
    """A Chromium context for the live server."""
    context = chromium.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


def sign_in(context: Any, live_server: Any, user: Any) -> None:
    """Sign ``user`` in by handing the browser a real session cookie."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}])
