"""The watchdog's counts of responded decisions (``approvals.selectors.error_counts``) are read from the index
alone on SQLite (migration ``auditlog.0011``): the plan SQLite makes for the statement the watchdog sends."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.selectors import error_counts
from tests.approvals.conftest import log_responded
from tests.factories import NOW, make_agent

pytestmark = pytest.mark.django_db


def _counts_statement() -> tuple[str, tuple[int, int]]:
    """The SQL of one ``error_counts`` over two intervals, as sent, and the counts it gave."""
    agent, _ = make_agent(now=NOW - timedelta(days=21))
    start = NOW - timedelta(days=10)
    log_responded(agent, prefix="c", n=40, errors=10, start=start)
    intervals = [(start, start + timedelta(hours=1)), (start + timedelta(hours=2), NOW)]
    with CaptureQueriesContext(connection) as captured:
        counts = error_counts(agent=agent, intervals=intervals)
    [query] = [q["sql"] for q in captured.captured_queries if "auditlog_decision" in q["sql"]]
    return query, (counts.errors, counts.responses)


def test_error_counts__read_from_the_index_alone_on_sqlite__postgresql_index_as_declared() -> None:
    sql, counts = _counts_statement()
    # One every 7 minutes: 9 in the first hour, 22 from the third on; the 9 in between are not counted.
    assert counts == (8, 31)

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            plan = " / ".join(row[-1] for row in cursor.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
            assert "USING COVERING INDEX decision_agent_responded" in plan, plan
        else:
            # The SQLite-only migration leaves PostgreSQL's index as the model declares it, INCLUDE and all.
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'decision_agent_responded'")
            [(definition,)] = cursor.fetchall()
            assert '(agent_id, "timestamp", seq) INCLUDE (action, response_action, modified_action)' in definition
