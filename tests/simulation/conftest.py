from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from simulation.runner import simulate
from simulation.world import scenario_get
from tests.audit_owner import agent_history_remove
from thresholds.models import ConfigVersion
from tuner.models import Proposal

START = date(2026, 1, 5)  # a Monday


def run_and_collect(scenario: str, *, weeks: int, per_day: int, seed: int = 1) -> dict[str, Any]:
    """Run a scenario and keep what the tests look at, then remove the run's agent."""
    result = simulate(scenario=scenario_get(scenario), weeks=weeks, per_day=per_day, seed=seed, start=START)
    proposals = list(
        Proposal.objects.filter(agent__agent_id=result.agent_id).values(
            "run_id", "threshold_name", "current_value", "proposed_value", "decided_value", "status", "created_at"
        )
    )
    versions = list(
        ConfigVersion.objects.filter(agent__agent_id=result.agent_id)
        .order_by("number")
        .values("number", "source", "values", "activated_at")
    )
    agent_history_remove(result.agent_id)
    return {"table": result.table(), "events": result.events, "proposals": proposals, "versions": versions}


@pytest.fixture(scope="module")
def run_scenario(django_db_setup: Any, django_db_blocker: Any) -> Callable[..., dict[str, Any]]:
    """Runs are slow (tens of seconds at 2,000 a day): each is made once per module and shared by its tests."""
    cache: dict[tuple[str, int, int, int], dict[str, Any]] = {}

    def run(scenario: str, *, weeks: int, per_day: int, seed: int = 1, fresh: bool = False) -> dict[str, Any]:
        key = (scenario, weeks, per_day, seed)
        if fresh or key not in cache:
            with django_db_blocker.unblock():
                cache[key] = run_and_collect(scenario, weeks=weeks, per_day=per_day, seed=seed)
        return cache[key]

    return run


@pytest.fixture(scope="module")
def run_replay(django_db_setup: Any, django_db_blocker: Any) -> Callable[..., list[dict[str, Any]]]:
    from simulation.replay import ReplaySpec, replay_run

    def run(spec: ReplaySpec) -> list[dict[str, Any]]:
        with django_db_blocker.unblock():
            result = replay_run(spec, start=START)
            agent_history_remove(result.agent_id)
        return result.table()

    return run
