"""Times read from PostgreSQL (``loopsite/postgresql/base.py``): the same values as Django's own loader gives,
zone and all, parsed by psycopg's C loader rather than in Python."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import django.db
import psycopg
import pytest
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format

from loopsite.postgresql.base import timestamptz_loader
from tests.live_servers import database_url

pytestmark = pytest.mark.configured

TIMESTAMPTZ_OID = 1184

TIMES = [
    "2026-01-01 10:00:00+05",
    "2026-03-29 01:30:00.5+00",
    "2026-10-25 02:59:59.999999-03:30",
    "2000-01-01 00:00:00+05:30:17",  # an offset with seconds
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "infinity",  # refused by both: no datetime holds it
    "0044-03-15 12:00:00+00 BC",
]


def _read(cursor: Any, literal: str) -> str:
    """The value as read, or the error it raises, as text: what the two loaders are compared on."""
    try:
        cursor.execute(f"SELECT '{literal}'::timestamptz, NULL::timestamptz")
        value, nothing = cursor.fetchone()
    except (psycopg.DataError, django.db.DataError, NotImplementedError) as exc:
        return f"refused: {exc}"
    assert nothing is None
    return f"{value!r} {value.tzinfo!r}"


def _read_apart(register: Callable[[Any], None], literal: str, *, session_zone: str, datestyle: str) -> str:
    """``_read`` on a connection of its own, in ``session_zone`` and ``datestyle``, with the loader ``register``
    puts on its cursor."""
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"SET TIME ZONE '{session_zone}'")
        conn.execute(f"SET datestyle = '{datestyle}'")
        cursor = conn.cursor()
        register(cursor)
        return _read(cursor, literal)


def _djangos(zone: Any, literal: str, *, session_zone: str = "UTC", datestyle: str = "ISO, MDY") -> str:
    """What Django's own loader reads."""
    return _read_apart(
        lambda cursor: register_tzloader(zone, cursor), literal, session_zone=session_zone, datestyle=datestyle
    )


def _ours(zone: Any, literal: str, *, session_zone: str = "UTC", datestyle: str = "ISO, MDY") -> str:
    return _read_apart(
        lambda cursor: cursor.adapters.register_loader("timestamptz", timestamptz_loader(zone)),
        literal,
        session_zone=session_zone,
        datestyle=datestyle,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("literal", TIMES)
def test_a_time_read_through_django__as_djangos_own_loader_reads_it(literal: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        got = _read(cursor, literal)
    assert got == _djangos(connection.timezone, literal)
    if not got.startswith("refused"):
        assert got.endswith(" datetime.timezone.utc")


@pytest.mark.django_db
def test_django_cursors_parse_times_in_c() -> None:
    """The connection's loader hands psycopg the C parser's own ``load``: no Python frame per value. Django's
    loader is a Python subclass of psycopg's Python loader, whose ``load`` is Python code."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        loader = cursor.cursor._tx.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        assert isinstance(cursor.fetchone()[0], datetime)
    assert type(loader.load.__self__).__module__.startswith("psycopg_binary"), loader.load


@pytest.mark.parametrize(
    ("zone", "session_zone"),
    [
        (None, "UTC"),  # USE_TZ off: naive values
        (None, "America/Sao_Paulo"),
        (UTC, "Europe/Paris"),  # not as Django sets it: both give the wall time labelled UTC
        (timezone(timedelta(hours=2)), "UTC"),
    ],
)
def test_other_zones__as_djangos_own_loader(zone: Any, session_zone: str) -> None:
    for literal in TIMES:
        assert _ours(zone, literal, session_zone=session_zone) == _djangos(zone, literal, session_zone=session_zone), (
            literal
        )


@pytest.mark.parametrize("datestyle", ["ISO, DMY", "SQL, DMY", "German"])
def test_other_datestyles__as_djangos_own_loader(datestyle: str) -> None:
    """Outside ISO, both refuse alike (psycopg parses ISO only); a DMY order does not change ISO output."""
    for literal in TIMES[:3]:
        ours = _ours(UTC, literal, datestyle=datestyle)
        assert ours == _djangos(UTC, literal, datestyle=datestyle), literal
        assert ours.startswith("refused") == (not datestyle.startswith("ISO"))
