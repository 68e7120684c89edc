"""The living demo: users for each role, a demo agent with eight weeks of simulated history, a pending proposal
and items in the review queue. Idempotent: what exists already is left as it is."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model

from people.roles import Role
from people.services import user_create
from simulation.runner import Loop, monday_on_or_before
from simulation.world import World, scenario_get
from thresholds.models import Agent
from tuner.models import Proposal

DEMO_USERS = (
    ("rita", Role.REVIEWER, "rita-reviews-2026"),
    ("alice", Role.APPROVER, "alice-approves-2026"),
    ("admin", Role.ADMIN, "admin-runs-2026"),
)
TRIAGE = "demo-triage"
RULES = "demo-rules"
TRIAGE_WEEKS = 8
RULES_WEEKS = 3
SEED = 7


@dataclass
class DemoReport:
    users: list[tuple[str, str, str | None]] = field(default_factory=list)  # (username, role, password if new)
    agents: list[tuple[str, str, str | None]] = field(default_factory=list)  # (agent id, what, key if new)


def demo_users(report: DemoReport) -> dict[str, Any]:
    users = {}
    user_model = get_user_model()
    for username, role, password in DEMO_USERS:
        existing = user_model.objects.filter(username=username).first()
        if existing is not None:
            users[username] = existing
            # Still the demo password: show it again, so a second `make run` still tells a newcomer how to sign in.
            report.users.append((username, role.value, password if existing.check_password(password) else None))
            continue
        user, _ = user_create(username=username, role=role, password=password, email=f"{username}@example.com")
        users[username] = user
        report.users.append((username, role.value, password))
    return users


def _has_history(agent_id: str) -> bool:
    """Whatever the agent has (even a history cut short) is kept: nothing is ever deleted to make it anew."""
    return Agent.objects.filter(agent_id=agent_id).exists()


def _history(
    scenario_name: str,
    *,
    agent_id: str,
    name: str,
    weeks: int,
    now: datetime,
    approver: Any,
    per_day: int,
    approver_decides: bool = True,
) -> Loop:
    """Simulate ``weeks`` of a scenario's history for a demo agent, up to the current hour (the last days'
    decisions are left in the queue)."""
    scenario = scenario_get(scenario_name)
    start = monday_on_or_before(now.date()) - timedelta(weeks=weeks)
    loop = Loop(scenario=scenario, agent_id=agent_id, start=start, seed=SEED, name=name, approver=approver)
    if not approver_decides:
        loop.approver_decides = lambda now: None  # type: ignore[method-assign]
    world = World(scenario, SEED)
    days = (now.date() - start).days + 1
    loop.run(days=days, cases_for_day=lambda day: world.cases(day, per_day), until=now, drain=False)
    return loop


def demo_triage(*, now: datetime, approver: Any, per_day: int, report: DemoReport) -> None:
    """Thresholds set too low eight weeks ago: dismissals high, falling through the cycles, then a quiet tuner.
    The history runs up to the current hour, so the last two days' decisions wait in the queue."""
    if _has_history(TRIAGE):
        report.agents.append((TRIAGE, "eight weeks of history (kept)", None))
        return
    loop = _history(
        "miscalibrated",
        agent_id=TRIAGE,
        name="Ticket triage (demo)",
        weeks=TRIAGE_WEEKS,
        now=now,
        approver=approver,
        per_day=per_day,
    )
    report.agents.append((TRIAGE, f"{TRIAGE_WEEKS} weeks of history, {per_day} decisions a day", loop.key))


def demo_rules(*, now: datetime, approver: Any, per_day: int, report: DemoReport) -> None:
    """A rule-based agent three weeks in: this week's cycle has proposed a change that waits for an approver."""
    if _has_history(RULES):
        report.agents.append((RULES, "rule-based agent (kept)", None))
        return
    # The approver decides nothing here: the cycle of the current week leaves its proposals pending.
    loop = _history(
        "rules",
        agent_id=RULES,
        name="Card payments rules (demo)",
        weeks=RULES_WEEKS,
        now=now,
        approver=approver,
        per_day=per_day,
        approver_decides=False,
    )
    pending = Proposal.objects.filter(agent=loop.agent, status=Proposal.Status.PENDING).count()
    report.agents.append((RULES, f"rule-based, {pending} proposal(s) waiting for an approver", loop.key))


def demo_build(*, now: datetime | None = None, per_day: int = 200) -> DemoReport:
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    report = DemoReport()
    users = demo_users(report)
    demo_triage(now=now, approver=users["alice"], per_day=per_day, report=report)
    demo_rules(now=now, approver=users["alice"], per_day=per_day, report=report)
    return report
