"""Agent keys are kept in each process; a revoke must stop a key at once in every process, not after a delay."""

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from people import authentication
from tests.factories import entry
from thresholds.models import AgentKey
from thresholds.services import agent_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_kept_keys() -> None:
    authentication._kept.clear()


CONFIG = "/api/v1/agents/triage/config"


def another_process_copy() -> dict[str, Any]:
    """What another process holds after serving this key: its own copy, read under the stamp of that time."""
    return dict(authentication._kept)


def test_revoke_in_admin__a_process_that_kept_the_key__refuses_it_at_its_next_request(
    agent_client: APIClient, admin_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    assert agent_client.get(CONFIG).status_code == 200
    assert agent_client.get(CONFIG).status_code == 200  # served from the kept copy
    kept_elsewhere = another_process_copy()
    assert kept_elsewhere, "the key should be kept in process after a request"
    admin = Client()
    admin.force_login(admin_user)
    key = AgentKey.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        admin.post("/admin/thresholds/agentkey/", {"action": "revoke", "_selected_action": [key.pk]})
    authentication._kept.update(kept_elsewhere)  # that process never heard of the revoke but for the stamp

    response = agent_client.get(CONFIG)
    assert response.status_code == 401
    assert "unknown or revoked agent key" in response.content.decode()


def revoked_by_saving_while_kept_elsewhere(agent_client: APIClient, capture_on_commit: Any) -> AgentKey:
    """The agent's key, used once (so kept), then revoked by saving it, while another process keeps its copy."""
    assert agent_client.post("/api/v1/decisions", entry(id="before"), format="json").status_code == 201
    kept_elsewhere = another_process_copy()
    key = AgentKey.objects.get()
    with capture_on_commit(execute=True):
        key.revoked_at = key.created_at
        key.save()
    authentication._kept.update(kept_elsewhere)
    return key


def test_revoke_by_saving_the_key__refused_at_once(
    agent_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    revoked_by_saving_while_kept_elsewhere(agent_client, django_capture_on_commit_callbacks)

    assert agent_client.post("/api/v1/decisions", entry(id="after"), format="json").status_code == 401


def test_key_deleted__refused_at_once(agent_client: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    assert agent_client.get(CONFIG).status_code == 200
    kept_elsewhere = another_process_copy()

    with django_capture_on_commit_callbacks(execute=True):
        AgentKey.objects.all().delete()
    authentication._kept.update(kept_elsewhere)

    assert agent_client.get(CONFIG).status_code == 401


def test_another_key_issued__the_kept_key_still_works(
    agent: Any, agent_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    assert agent_client.get(CONFIG).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        second = agent_key_create(agent=agent, name="rotation")

    assert agent_client.get(CONFIG).status_code == 200
    assert APIClient().get(CONFIG, HTTP_AUTHORIZATION=f"Bearer {second}").status_code == 200


def test_cache_unreachable__kept_keys_dropped_and_keys_read_from_the_database(
    agent_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert agent_client.get(CONFIG).status_code == 200
    assert authentication._kept
    monkeypatch.setattr(authentication, "_keys_stamp", lambda seen=None: None)

    assert agent_client.get(CONFIG).status_code == 200
    # A revoke made while the cache is unreachable cannot delete the stamp: nothing kept may outlive the outage.
    assert authentication._kept == {}
    AgentKey.objects.update(revoked_at=AgentKey.objects.get().created_at)  # no signal, no stamp: still seen
    assert agent_client.get(CONFIG).status_code == 401


def test_revoked_key_kept_elsewhere__after_its_first_refusal_no_longer_counted_against_its_agent(
    agent_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    """A request counts against its agent's rate in the same round trip as the key's stamp, when the process keeps
    the key (``AgentPrincipal.counted``). A revoked key's holder must not go on spending its agent's rate."""
    from django.core.cache import cache

    from people.throttling import window_key

    key = revoked_by_saving_while_kept_elsewhere(agent_client, django_capture_on_commit_callbacks)
    counter = window_key("agent", key.agent_id)

    assert agent_client.post("/api/v1/decisions", entry(id="after-1"), format="json").status_code == 401
    counted = cache.get(counter)
    for i in range(3):
        assert agent_client.post("/api/v1/decisions", entry(id=f"after-{i + 2}"), format="json").status_code == 401
    assert cache.get(counter) == counted
    assert key.prefix not in authentication._kept
