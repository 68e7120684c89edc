"""The queue keeps the agents in process under a stamp in the shared cache (``auditlog.selectors._agents``): any
change to an agent, by any path, shows at the next page; without the cache nothing is kept."""

import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from auditlog import selectors
from tests.factories import make_agent
from tests.web.conftest import log_pending, signed_in
from thresholds.models import Agent

pytestmark = pytest.mark.django_db

THUMBS = b'name="thumb" value="up"'


def _agent_reads(client: Any) -> tuple[bytes, int]:
    with CaptureQueriesContext(connection) as captured:
        html = client.get("/queue/").content
    # The statements that read the agents themselves (others name the table in a subquery or a join).
    tables = [re.findall(r'FROM "?(\w+)"?', q["sql"])[-1] for q in captured.captured_queries]
    return html, tables.count("thresholds_agent")


def test_agents__kept_between_pages__read_again_after_a_save_by_any_path(reviewer: Any, agent: Any) -> None:
    log_pending(agent.agent_id, 2)
    client = signed_in(reviewer)
    html, reads = _agent_reads(client)
    assert reads == 1 and THUMBS not in html
    assert _agent_reads(client)[1] == 0  # this process's copy

    # A save outside any service (the admin's path): the model's signal drops the copy.
    stored = Agent.objects.get(pk=agent.pk)
    stored.binary_mode = True
    stored.save()
    html, reads = _agent_reads(client)
    assert reads == 1 and THUMBS in html

    make_agent("fraud")  # registered through the service
    html, reads = _agent_reads(client)
    assert reads == 1 and b'<option value="fraud"' in html

    Agent.objects.get(agent_id="fraud").delete()
    html, reads = _agent_reads(client)
    assert reads == 1 and b'<option value="fraud"' not in html


def test_agents__a_change_committed_elsewhere__drops_the_stamp_when_it_commits(
    reviewer: Any, agent: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django.core.cache import cache

    client = signed_in(reviewer)
    client.get("/queue/")
    before = cache.get(selectors.QUEUE_AGENTS_STAMP)
    assert before is not None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        Agent.objects.filter(pk=agent.pk).first().save()  # type: ignore[union-attr]
    # Deleted at once for this transaction's own reads, made again by the next page, and deleted again at the
    # commit: a page read between the save and its commit, which saw the agent as it was, is not trusted after.
    client.get("/queue/")
    remade = cache.get(selectors.QUEUE_AGENTS_STAMP)
    assert remade is not None and remade != before
    for callback in callbacks:
        callback()
    assert cache.get(selectors.QUEUE_AGENTS_STAMP) is None


def test_agents__cache_unreachable__read_on_every_page(
    reviewer: Any, agent: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "stamp_get", lambda *args, **kwargs: None)  # what an unreachable cache gives
    client = signed_in(reviewer)
    assert [_agent_reads(client)[1] for _ in range(3)] == [1, 1, 1]
