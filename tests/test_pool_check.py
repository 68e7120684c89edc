"""The database pool's connection check (``loopsite/postgresql/base.py``): a dead connection is never handed out,
and a live one is handed out without a round trip."""

import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from loopsite.postgresql.base import connection_check
from tests.live_servers import database_url

pytestmark = pytest.mark.configured


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every empty-query check made from now on."""
    made: list[Any] = []
    original = ConnectionPool.check_connection

    def counted(conn: Any) -> None:
        made.append(conn)
        original(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    return made


@pytest.mark.django_db
def test_the_pool_checks_with_connection_check() -> None:
    from django.db import connection

    assert connection.pool._check is connection_check  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_live_idle_connection__passes_without_a_round_trip(round_trips: list[Any]) -> None:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        connection_check(conn)
    assert round_trips == []


@pytest.mark.django_db
def test_connection_the_server_ended__fails_the_check(round_trips: list[Any]) -> None:
    with (
        psycopg.connect(database_url(), autocommit=True) as victim,
        psycopg.connect(database_url(), autocommit=True) as killer,
    ):
        killer.execute("SELECT pg_terminate_backend(%s)", [victim.info.backend_pid])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the server's goodbye reaches the socket
            try:
                connection_check(victim)
            except psycopg.OperationalError:
                break
            time.sleep(0.01)
        else:
            pytest.fail("a connection the server ended passed the check")
    assert len(round_trips) == 1  # the socket said something: the empty query decided


@pytest.mark.django_db
def test_closed_connection__fails_the_check() -> None:
    conn = psycopg.connect(database_url(), autocommit=True)
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        connection_check(conn)
