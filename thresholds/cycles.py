"""An agent's cycle: the ISO week in the agent's timezone. The tuner runs once a cycle and the change guard
counts and bounds changes per cycle, so both read it here."""

import zoneinfo
from datetime import date, datetime, time, timedelta

from thresholds.models import Agent


def agent_zone(agent: Agent) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(agent.timezone or "UTC")


def cycle_monday(*, agent: Agent, now: datetime) -> date:
    """The Monday of ``now``'s ISO week in the agent's timezone: the cycle's name."""
    local = now.astimezone(agent_zone(agent))
    return local.date() - timedelta(days=local.weekday())


def cycle_start(*, agent: Agent, now: datetime) -> datetime:
    """Midnight at the start of that Monday, in the agent's timezone (an aware datetime)."""
    return datetime.combine(cycle_monday(agent=agent, now=now), time.min, tzinfo=agent_zone(agent))
