"""A decision's agent and config version always exist, and the version is that agent's (auditlog.references).

On PostgreSQL the decision table's foreign keys became per-statement triggers; these tests try to break what the
keys promised, by statements no service makes: raw inserts, updates and deletes, and two connections racing.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from auditlog.models import Decision
from auditlog.references import references_check_per_row, references_check_per_statement
from auditlog.services import decision_log
from tests.factories import NOW, entry, make_agent
from thresholds.models import Agent, ConfigVersion

pytestmark = [pytest.mark.configured]

COLUMNS = [str(f.column) for f in Decision._meta.concrete_fields if f.column != "seq"]


def _logged(agent_id: str) -> Decision:
    make_agent(agent_id)
    decision_log(raw=entry(agent_id), now=NOW)
    return Decision.objects.filter(agent__agent_id=agent_id).latest("seq")


def _copies(source: Decision, *copies: dict[str, Any]) -> str:
    """One INSERT of copies of ``source``, each with the columns ``copies`` name replaced; returns the SQL."""
    selects = []
    for n, replaced in enumerate(copies):
        values = {"entry_id": f"'{source.entry_id}-copy-{n}'", **{k: str(v) for k, v in replaced.items()}}
        listed = ", ".join(values.get(c, c) for c in COLUMNS)
        selects.append(f"SELECT {listed} FROM auditlog_decision WHERE seq = {source.seq}")
    return f"INSERT INTO auditlog_decision ({', '.join(COLUMNS)}) {' UNION ALL '.join(selects)}"


def _live(agent: Agent) -> int:
    return int(ConfigVersion.objects.get(agent=agent, is_live=True).pk)


def _execute(sql: str, params: list[Any] | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def _spare_version(agent: Agent, number: int = 99) -> int:
    """A version of ``agent`` nothing refers to (made by hand: the services refer to every version they make)."""
    with connection.cursor() as cursor:
        cursor.execute(
            'INSERT INTO thresholds_configversion (number, "values", source, reason, is_live, activated_at, agent_id) '
            "VALUES (%s, '{}', 'manual', 'spare', false, now(), %s) RETURNING id",
            [number, agent.pk],
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db
def test_references__a_batch_with_one_row_under_another_agents_version__refused_whole() -> None:
    decision = _logged("triage")
    other, _ = make_agent("payments")

    with pytest.raises(IntegrityError, match="config version .* of agent .*: that agent has no such version"):
        _execute(_copies(decision, {}, {"config_version_id": _live(other)}))

    assert Decision.objects.count() == 1  # neither copy: the statement is refused as a whole


@pytest.mark.django_db
def test_references__a_version_or_an_agent_that_does_not_exist__refused() -> None:
    decision = _logged("triage")

    for missing in ({"config_version_id": 987654}, {"agent_id": 987654}):
        with pytest.raises(IntegrityError, match="that agent has no such version"):
            _execute(_copies(decision, missing))

    assert Decision.objects.count() == 1


@pytest.mark.django_db
def test_references__a_referenced_version_or_agent__not_deleted_nor_renumbered() -> None:
    decision = _logged("triage")
    version_pk, agent_pk = decision.config_version_id, decision.agent_id

    for sql in (
        "DELETE FROM thresholds_configversion WHERE id = %s",
        "UPDATE thresholds_configversion SET id = 987654 WHERE id = %s",
    ):
        with pytest.raises(IntegrityError, match="config_version_id = .* is still referred to"):
            _execute(sql, [version_pk])
    for sql in ("DELETE FROM thresholds_agent WHERE id = %s", "UPDATE thresholds_agent SET id = 987654 WHERE id = %s"):
        with pytest.raises(IntegrityError, match="agent_id = .* is still referred to"):
            _execute(sql, [agent_pk])

    _execute("UPDATE thresholds_agent SET name = 'renamed' WHERE id = %s", [agent_pk])  # other columns: fine
    assert ConfigVersion.objects.filter(pk=version_pk).exists()
    assert Agent.objects.get(pk=agent_pk).name == "renamed"


@pytest.mark.django_db
def test_references__an_update_to_another_agents_version__refused__to_its_own__allowed() -> None:
    decision = _logged("triage")
    other, _ = make_agent("payments")
    own_spare = _spare_version(decision.agent)

    with pytest.raises(IntegrityError, match="update on table .* that agent has no such version"):
        _execute("UPDATE auditlog_decision SET config_version_id = %s", [_live(other)])
    _execute("UPDATE auditlog_decision SET config_version_id = %s", [own_spare])

    decision.refresh_from_db()
    assert decision.config_version_id == own_spare


@pytest.mark.django_db
def test_references__undone_and_redone__keys_then_triggers() -> None:
    def kinds() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT count(*) FROM pg_constraint WHERE conrelid = 'auditlog_decision'::regclass "
                "AND contype = 'f' AND conparentid = 0), (SELECT count(*) FROM pg_trigger "
                "WHERE tgrelid = 'auditlog_decision'::regclass AND NOT tgisinternal)"
            )
            keys, triggers = cursor.fetchone()
            return int(keys), int(triggers)

    assert kinds() == (0, 2)
    with connection.cursor() as cursor:
        references_check_per_row(cursor)
    assert kinds() == (2, 0)
    with connection.cursor() as cursor:
        references_check_per_statement(cursor)
    assert kinds() == (0, 2)


# --- Two connections racing: the locks a foreign key took are still taken ------------------------------------


def _dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST']} port={s['PORT'] or 5432} user={s['USER']} dbname={s['NAME']}"


def _waiting_for_a_lock(pid: int) -> None:
    """Until the backend ``pid`` waits for a lock (bounded: 10 s)."""
    with psycopg.connect(_dsn(), autocommit=True) as watcher:
        for _ in range(200):
            row = watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lock")


@contextmanager
def _in_thread(work: Any) -> Iterator[dict[str, Any]]:
    """Run ``work`` in a thread while the block runs; the outcome ("done" or "error") once both are over."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            work()
            outcome["done"] = True
        except Exception as exc:  # noqa: BLE001 - handed to the test to assert on
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    yield outcome
    thread.join(timeout=20)
    assert not thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_references__a_delete_racing_an_uncommitted_insert__waits_then_is_refused() -> None:
    decision = _logged("triage")
    spare = _spare_version(decision.agent)
    insert = _copies(decision, {"config_version_id": spare})

    with psycopg.connect(_dsn()) as inserter, psycopg.connect(_dsn()) as deleter:
        inserter.execute(insert)  # not committed: holds the spare version's KEY SHARE lock
        deleter_pid = deleter.info.backend_pid

        def delete() -> None:
            deleter.execute("DELETE FROM thresholds_configversion WHERE id = %s", [spare])
            deleter.commit()

        with _in_thread(delete) as outcome:
            _waiting_for_a_lock(deleter_pid)
            inserter.commit()

    assert isinstance(outcome.get("error"), psycopg.errors.ForeignKeyViolation), outcome
    assert ConfigVersion.objects.filter(pk=spare).exists()
    assert Decision.objects.filter(config_version_id=spare).count() == 1


@pytest.mark.django_db(transaction=True)
def test_references__an_insert_racing_an_uncommitted_delete__waits_then_is_refused() -> None:
    decision = _logged("triage")
    spare = _spare_version(decision.agent)
    insert = _copies(decision, {"config_version_id": spare})

    with psycopg.connect(_dsn()) as deleter, psycopg.connect(_dsn()) as inserter:
        deleter.execute("DELETE FROM thresholds_configversion WHERE id = %s", [spare])  # not committed yet
        inserter_pid = inserter.info.backend_pid

        def insert_and_commit() -> None:
            inserter.execute(insert)
            inserter.commit()

        with _in_thread(insert_and_commit) as outcome:
            _waiting_for_a_lock(inserter_pid)
            deleter.commit()

    assert isinstance(outcome.get("error"), psycopg.errors.ForeignKeyViolation), outcome
    assert not ConfigVersion.objects.filter(pk=spare).exists()
    assert not Decision.objects.filter(config_version_id=spare).exists()
