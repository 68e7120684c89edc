"""The simulation's reference agent logs through the agent client, answered in-process by the API's views."""

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from auditlog.models import Decision
from simulation.runner import AgentClientFailed, Loop
from simulation.world import World, scenario_get
from thresholds.services import config_version_activate

pytestmark = pytest.mark.django_db

START = date(2026, 1, 5)  # a Monday
PER_DAY = 48
CHANGE_AFTER = (1, 4)  # the config changes at the end of day 1, hour 4


def _loop(agent_id: str, scenario: str = "miscalibrated") -> tuple[Loop, World, list[dict[str, Any]]]:
    """A loop whose transport records every request the client makes: (method, path, parsed body, status)."""
    loop = Loop(scenario=scenario_get(scenario), agent_id=agent_id, start=START, seed=5)
    seen: list[dict[str, Any]] = []
    answer = loop.transport.request

    def recording(method: str, path: str, **kwargs: Any) -> Any:
        response = answer(method, path, **kwargs)
        body = kwargs.get("body")
        seen.append(
            {
                "method": method,
                "path": path,
                "body": json.loads(body) if body else None,
                "status": response.status,
                "headers": kwargs.get("headers") or {},
                "now": loop.now,
            }
        )
        return response

    loop.transport.request = recording  # type: ignore[method-assign]
    return loop, World(loop.scenario, 5), seen


def test_run__every_decision_arrives_through_the_client_with_the_version_it_read(
    django_capture_on_commit_callbacks: Any,
) -> None:
    loop, world, seen = _loop("sim-client-1")
    log_hour = loop.log_hour
    flag_before = loop.scenario.initial_values["flag_threshold"]
    flag_after = round(flag_before * 1.1, 4)

    def log_then_change(*, day: int, hour: int, now: datetime, **kwargs: Any) -> None:
        log_hour(day=day, hour=hour, now=now, **kwargs)
        if (day, hour) == CHANGE_AFTER:
            values = {**loop.scenario.initial_values, "flag_threshold": flag_after}
            with django_capture_on_commit_callbacks(execute=True):  # the live config's cache is cleared on commit
                config_version_activate(agent=loop.agent, values=values, source="manual", now=now, reason="test")

    loop.log_hour = log_then_change  # type: ignore[method-assign]
    loop.run(days=3, cases_for_day=lambda day: world.cases(day, PER_DAY), drain=False)

    batches = [r for r in seen if r["path"] == "/api/v1/decisions/batch"]
    reads = [r for r in seen if r["path"] == "/api/v1/config"]
    assert all(r["status"] == 200 for r in batches)
    assert all(r["headers"]["Authorization"] == f"Bearer {loop.key}" for r in seen)
    sent = {e["id"]: e for r in batches for e in r["body"]["entries"]}
    stored = dict(Decision.objects.filter(agent=loop.agent).values_list("entry_id", "config_version__number"))
    assert len(stored) == 3 * PER_DAY and set(sent) == set(stored)  # every decision came through a batch, once
    assert all(e["agentId"] == "sim-client-1" for e in sent.values())  # filled by the client

    # One config read per simulated hour with cases; 304 while the version stands, 200 when it changed.
    hours_with_cases = len(batches)
    assert len(reads) == hours_with_cases + 1  # and one when the client starts
    assert [r["status"] for r in reads].count(200) == 2

    # The change made after day 1, hour 4 is used from the next hour on, and the entries say so.
    for entry_id, entry in sent.items():
        day, hour = int(entry_id.split("-d")[1][:4]), int(entry["sessionId"][-2:])
        after = (day, hour) > CHANGE_AFTER
        assert entry["configVersion"] == (2 if after else 1) == stored[entry_id]
        if entry["decision"]["thresholdName"] == "flag_threshold":
            assert entry["decision"]["thresholdUsed"] == (flag_after if after else flag_before)
    # The batch view stored them at the simulated time: each batch at the end of its hour.
    assert all(r["now"].hour == (int(r["body"]["entries"][0]["sessionId"][-2:]) + 1) % 24 for r in batches)

    assert loop._client is None and loop._spool_dir is None  # closed at the end of the run, its spool removed


def test_log_hour__rule_based_agent__logged_through_the_client__close_removes_the_spool() -> None:
    loop, world, seen = _loop("sim-client-2", "rules")
    cases = world.cases(0, 24 * 20)
    loop.log_hour(day=0, hour=9, cases=cases, now=datetime(2026, 1, 5, 10, tzinfo=UTC), rng=np.random.default_rng(1))
    spool = Path(str(loop._spool_dir))
    assert spool.is_dir() and loop.client.stats()["sent"] > 0
    (batch,) = [r for r in seen if r["path"].endswith("/batch")]
    assert all("confidence" not in e["decision"] and e["configVersion"] == 1 for e in batch["body"]["entries"])
    assert Decision.objects.filter(agent=loop.agent).count() == loop.client.stats()["sent"]
    loop.close()
    assert not spool.exists()


def test_run__entry_refused_by_the_api__the_run_fails_loudly() -> None:
    loop, world, _seen = _loop("sim-client-3")
    answer = loop.transport.request

    def tampering(method: str, path: str, **kwargs: Any) -> Any:
        if path.endswith("/batch"):
            body = json.loads(kwargs["body"])
            body["entries"][0]["decision"]["action"] = "shred"  # not one of the agent's actions
            kwargs["body"] = json.dumps(body).encode()
        return answer(method, path, **kwargs)

    loop.transport.request = tampering  # type: ignore[method-assign]
    with pytest.raises(AgentClientFailed, match="refused 1 of the agent's decisions"):
        loop.run(days=1, cases_for_day=lambda day: world.cases(day, PER_DAY), drain=False)
    assert loop._client is None and loop._spool_dir is None  # cleaned up all the same
