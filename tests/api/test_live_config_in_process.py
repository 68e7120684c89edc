"""The live config is kept in each process; a change must reach every process at its next read."""

from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import NOW, entry
from thresholds import selectors
from thresholds.services import config_version_activate

pytestmark = pytest.mark.django_db


def test_config_changed__a_process_that_kept_the_old_one__logs_under_the_new_one(
    agent: Any, agent_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    first = agent_client.post("/api/v1/decisions", entry(id="before"), format="json")
    assert first.json()["configVersion"] == 1
    kept_elsewhere = dict(selectors._in_process)  # what another process holds after serving that POST
    assert agent.pk in kept_elsewhere

    with django_capture_on_commit_callbacks(execute=True):
        config_version_activate(
            agent=agent,
            values={"flag_threshold": 0.65, "escalate_threshold": 0.85},
            source="manual",
            now=NOW - timedelta(minutes=1),
        )
    selectors._in_process.update(kept_elsewhere)  # that process heard of the change only through the stamp

    after = agent_client.post(
        "/api/v1/decisions",
        entry(id="after", timestamp="2026-03-02T08:59:30Z", decision={"thresholdUsed": 0.65}),
        format="json",
    )
    assert after.status_code == 201, after.content
    assert after.json()["configVersion"] == 2
    config = agent_client.get("/api/v1/agents/triage/config").json()
    assert (config["version"], config["thresholds"]["flag_threshold"]) == (2, 0.65)


def test_cache_unreachable__kept_configs_dropped_and_config_read_from_the_database(
    agent: Any, agent_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert agent_client.post("/api/v1/decisions", entry(id="d-1"), format="json").json()["configVersion"] == 1
    assert agent.pk in selectors._in_process
    monkeypatch.setattr(selectors, "_stamp", lambda agent_pk, seen=None: None)

    assert agent_client.post("/api/v1/decisions", entry(id="d-2"), format="json").json()["configVersion"] == 1
    assert selectors._in_process == {}
