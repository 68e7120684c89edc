"""Reads that may lag go to the replica, inside ``lagging_reads()`` only; everything else goes to the primary."""

import asyncio
import contextvars
import json
import os
import re
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from auditlog.models import Decision
from loopsite.db_router import PRIMARY, REPLICA, ReplicaRouter
from loopsite.replica import lagging_iteration, lagging_reads, reads_may_lag
from tests.factories import entry, make_agent, user_with_role
from thresholds.models import Agent
from tuner.models import TunerRun

router = ReplicaRouter()


def _read() -> str:
    return router.db_for_read(Decision)


class _Stored:
    """An object as Django tracks it: ``_state.db`` is the alias it was read from or saved to."""

    def __init__(self, db: str) -> None:
        self._state = type("State", (), {"db": db})()


# --- The router's choices -----------------------------------------------------------------------------------


def test_router__outside_the_scope__reads_and_writes_go_to_the_primary() -> None:
    assert (_read(), router.db_for_write(Decision)) == (PRIMARY, PRIMARY)


def test_router__inside_the_scope__reads_go_to_the_replica_and_writes_to_the_primary() -> None:
    with lagging_reads():
        assert (_read(), router.db_for_write(Decision)) == (REPLICA, PRIMARY)


def test_router__an_object_read_from_the_replica__read_again_outside_the_scope__from_the_primary() -> None:
    # Django would otherwise follow the instance's own database for its related objects.
    assert router.db_for_read(Agent, instance=_Stored(REPLICA)) == PRIMARY
    assert router.db_for_write(Agent, instance=_Stored(REPLICA)) == PRIMARY


def test_router__scope_ended__even_by_an_exception__reads_go_back_to_the_primary() -> None:
    with pytest.raises(RuntimeError), lagging_reads():
        raise RuntimeError("the view failed")

    assert _read() == PRIMARY


def test_router__nested_scopes__the_outer_one_still_holds_after_the_inner_one_ends() -> None:
    seen = []
    with lagging_reads():
        with lagging_reads():
            seen.append(_read())
        seen.append(_read())
    seen.append(_read())

    assert seen == [REPLICA, REPLICA, PRIMARY]


def test_lagging_reads__as_a_decorator__the_scope_holds_for_the_call_only() -> None:
    @lagging_reads()
    def view() -> str:
        return _read()

    assert (view(), _read(), view()) == (REPLICA, PRIMARY, REPLICA)


@pytest.mark.django_db
def test_router__inside_the_scope_while_the_primary_is_in_a_transaction__reads_stay_on_the_primary() -> None:
    # The transaction may have written what it reads, which the replica has not got.
    with transaction.atomic(), lagging_reads():
        assert connections[PRIMARY].in_atomic_block
        assert _read() == PRIMARY


def test_router__a_thread_started_inside_the_scope__reads_from_the_primary() -> None:
    seen: list[str] = []
    with lagging_reads():
        worker = threading.Thread(target=lambda: seen.append(_read()))
        worker.start()
        worker.join()

    assert seen == [PRIMARY]


def test_router__a_thread_given_the_scope_s_context__reads_from_the_replica() -> None:
    seen: list[str] = []
    with lagging_reads():
        context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(lambda: seen.append(_read()),))
    worker.start()
    worker.join()

    assert seen == [REPLICA]
    assert _read() == PRIMARY


def test_router__one_thread_in_the_scope__another_thread_at_the_same_time_reads_from_the_primary() -> None:
    inside, checked = threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def dashboard_request() -> None:
        with lagging_reads():
            inside.set()
            checked.wait(timeout=30)
            seen["dashboard"] = _read()

    worker = threading.Thread(target=dashboard_request)
    worker.start()
    assert inside.wait(timeout=30)
    seen["decision POST"] = _read()
    checked.set()
    worker.join()

    assert seen == {"decision POST": PRIMARY, "dashboard": REPLICA}


def test_router__asyncio_tasks__each_has_its_own_scope() -> None:
    async def lagging() -> str:
        with lagging_reads():
            await asyncio.sleep(0)
            return _read()

    async def ordinary() -> str:
        await asyncio.sleep(0)
        return _read()

    async def both() -> list[str]:
        return list(await asyncio.gather(lagging(), ordinary()))

    assert asyncio.run(both()) == [REPLICA, PRIMARY]


@pytest.mark.parametrize(
    ("first", "second", "allowed"),
    [(PRIMARY, REPLICA, True), (REPLICA, REPLICA, True), (PRIMARY, PRIMARY, True), (PRIMARY, "other", None)],
)
def test_router__relations__between_the_primary_and_the_replica_only(first: str, second: str, allowed: Any) -> None:
    assert router.allow_relation(_Stored(first), _Stored(second)) is allowed


def test_router__migrations__never_on_the_replica_and_no_opinion_on_the_primary() -> None:
    assert router.allow_migrate(REPLICA, "auditlog", "decision") is False
    assert router.allow_migrate(PRIMARY, "auditlog", "decision") is None


def test_lagging_iteration__each_item_drawn_inside_the_scope__none_held_between_items() -> None:
    drawn: list[bool] = []

    def rows() -> Any:
        for row in ("a", "b"):
            drawn.append(reads_may_lag())
            yield row

    between = [(row, reads_may_lag()) for row in lagging_iteration(rows())]

    assert drawn == [True, True]
    assert between == [("a", False), ("b", False)]
    assert not reads_may_lag()


# --- With a real replica alias (configured tier) -------------------------------------------------------------

REQUESTS = r"""
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from thresholds.models import Agent
from tuner.services import tuner_cycle_run

given = json.loads(sys.argv[1])
agent_id, entry_id = given["agentId"], given["entry"]["id"]
agent_client = Client(HTTP_AUTHORIZATION="Bearer " + given["key"])
person = Client()
person.force_login(get_user_model().objects.get(username=given["reviewer"]))
JSON = "application/json"

def captured(call):
    with CaptureQueriesContext(connections["default"]) as primary:
        with CaptureQueriesContext(connections["replica"]) as replica:
            response = call()
    status = getattr(response, "status_code", None)
    return {
        "status": status,
        "body": response.json() if status == 200 and JSON in response["Content-Type"] else None,
        "primary": [q["sql"] for q in primary],
        "replica": [q["sql"] for q in replica],
    }

out = {
    "decision": captured(lambda: agent_client.post("/api/v1/decisions", given["entry"], content_type=JSON)),
    "response": captured(
        lambda: person.post(f"/api/v1/decisions/{entry_id}/response", {"action": "dismiss"}, content_type=JSON)
    ),
    "dashboard": captured(lambda: person.get("/dashboard/")),
    "agent dashboard": captured(lambda: person.get(f"/dashboard/{agent_id}/")),
    "metrics": captured(lambda: person.get(f"/api/v1/agents/{agent_id}/metrics/weekly?weeks=2")),
    "tuner cycle": captured(
        lambda: tuner_cycle_run(agent=Agent.objects.get(agent_id=agent_id), now=timezone.now())
    ),
}
print(json.dumps(out))
"""


def _database_url(settings_dict: dict[str, Any]) -> str:
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict["PASSWORD"] else ""
    return (
        f"postgres://{quote(settings_dict['USER'], safe='')}{password}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


# What may run on a hot standby: reads, and the transaction, settings and savepoints around them (the tuner's
# window reads set their work_mem with SET LOCAL in a transaction of their own on the replica).
READ_ONLY = ("SELECT", "SET", "BEGIN", "SAVEPOINT", "RELEASE", "COMMIT")


def _reads_only(queries: list[str]) -> bool:
    return all(sql.lstrip().upper().startswith(READ_ONLY) for sql in queries)


def _touches(queries: list[str], table: str) -> bool:
    """Whether a query names ``table`` (quoted by the ORM or not, in raw SQL; not a longer name)."""
    return any(re.search(rf"\b{table}\b", sql) for sql in queries)


@pytest.mark.configured
@pytest.mark.django_db(transaction=True)
def test_replica__dashboard_metrics_and_window_read_from_the_replica__decision_and_response_written_to_the_primary(
    tmp_path: Path,
) -> None:
    """The real ``replica`` alias, made by settings from ``DATABASE_REPLICA_URL``, with the router they install.

    CI's configured tier does not set ``DATABASE_REPLICA_URL``, and Django reads ``DATABASES`` and
    ``DATABASE_ROUTERS`` once per process (``override_settings`` does not rebuild connections). So this test
    commits its rows to the test database and runs the requests in a fresh interpreter whose ``DATABASE_URL``
    and ``DATABASE_REPLICA_URL`` both name that database: the replica is a mirror of the primary, as
    ``TEST = {"MIRROR": "default"}`` makes it under a test runner, and ``CaptureQueriesContext`` on each
    connection shows which one each request used.
    """
    agent, key = make_agent()
    user_with_role("reviewer", username="rita")
    body = entry(timestamp=(timezone.now() - timedelta(minutes=5)).isoformat())
    primary_url = _database_url(connections[PRIMARY].settings_dict)
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATABASE_REPLICA_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="loopsite.settings",
        LOOPSITE_VAR_DIR=str(tmp_path),
        DATABASE_URL=primary_url,
        DATABASE_REPLICA_URL=primary_url,
        CACHE_KEY_PREFIX=settings.CACHES["default"]["KEY_PREFIX"],  # this test's own keys, cleared after it
        ANTHROPIC_API_KEY="",  # the statistical generator: nothing leaves the machine
    )
    given = {"agentId": agent.agent_id, "key": key, "reviewer": "rita", "entry": body}
    result = subprocess.run(
        [sys.executable, "-c", REQUESTS, json.dumps(given)],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    # Writes, and the reads around them, on the primary only.
    assert (out["decision"]["status"], out["response"]["status"]) == (201, 201)
    assert _touches(out["decision"]["primary"], "auditlog_decision") and out["decision"]["replica"] == []
    assert _touches(out["response"]["primary"], "auditlog_decision") and out["response"]["replica"] == []
    assert Decision.objects.get(entry_id=body["id"]).response_action == "dismiss"
    # The lag-tolerant reads: the decision log from the replica, the session and the user from the primary.
    for name in ("dashboard", "agent dashboard", "metrics"):
        seen = out[name]
        assert seen["status"] == 200, name
        assert _touches(seen["replica"], "auditlog_decision"), name
        assert not _touches(seen["primary"], "auditlog_decision"), name
        assert _touches(seen["primary"], "django_session") and not _touches(seen["replica"], "django_session"), name
        assert _reads_only(seen["replica"]), name
    rows = out["metrics"]["body"]["results"]
    assert (sum(r["decisions"] for r in rows), sum(r["responses"] for r in rows)) == (1, 1)
    # The tuner cycle: its window from the replica, the run it stores on the primary.
    cycle = out["tuner cycle"]
    assert _touches(cycle["replica"], "auditlog_decision")
    assert _reads_only(cycle["replica"])
    assert any(sql.lstrip().upper().startswith("UPDATE") and '"tuner_tunerrun"' in sql for sql in cycle["primary"])
    assert TunerRun.objects.get(agent=agent).status == TunerRun.Status.DONE
