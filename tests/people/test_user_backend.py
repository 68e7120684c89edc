"""The sign-in backend reads the signed-in user and their group names in one statement (people/backends.py)."""

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from people.backends import UserBackend
from people.roles import is_approver, is_reviewer
from tests.factories import UserFactory, user_with_role
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


def fields(user: Any) -> dict[str, Any]:
    return {f.attname: getattr(user, f.attname) for f in get_user_model()._meta.concrete_fields}


def test_get_user__the_user_modelbackend_reads(django_assert_num_queries: Any) -> None:
    user: Any = UserFactory(first_name="Rita", email="rita@example.com", is_staff=True)
    user.last_login = datetime(2026, 11, 30, 8, 15, 30, 123456, tzinfo=UTC)
    user.save()

    with django_assert_num_queries(1):
        read: Any = UserBackend().get_user(user.pk)
    expected: Any = ModelBackend().get_user(user.pk)

    assert fields(read) == fields(expected)
    assert read.last_login == user.last_login and read.last_login.tzinfo is not None
    assert read.is_staff is True and read.is_superuser is False
    assert read._state.db == expected._state.db and not read._state.adding


@pytest.mark.parametrize("groups", [(), ("reviewers",), ("reviewers", "approvers"), ("approvers", "auditors")])
def test_get_user__carries_its_groups__role_checks_read_nothing_more(
    groups: tuple[str, ...], django_assert_num_queries: Any
) -> None:
    user: Any = UserFactory()
    other: Any = UserFactory()  # another user's groups are not this one's
    other.groups.add(Group.objects.get_or_create(name="reviewers")[0])
    other.groups.add(Group.objects.get_or_create(name="approvers")[0])
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])

    with django_assert_num_queries(1):
        read = UserBackend().get_user(user.pk)
        assert is_reviewer(read) == bool({"reviewers", "approvers"} & set(groups))
        assert is_approver(read) == ("approvers" in groups)
    assert read._loopsite_groups == set(groups)


def test_get_user__inactive_unknown_or_malformed_id__no_user() -> None:
    inactive: Any = UserFactory(is_active=False)
    backend = UserBackend()

    assert backend.get_user(inactive.pk) is None
    assert backend.get_user(inactive.pk + 1000) is None
    assert backend.get_user("not-a-number") is None
    assert backend.get_user(None) is None


def test_queue__the_page_reads_the_user_and_their_groups_in_one_statement() -> None:
    client = signed_in(user_with_role("reviewer"))
    client.get("/queue/")  # the first visit may fill caches

    with CaptureQueriesContext(connection) as captured:
        response = client.get("/queue/")

    assert response.status_code == 200
    auth = [q["sql"] for q in captured.captured_queries if "auth_user" in q["sql"] or "auth_group" in q["sql"]]
    assert len(auth) == 1, auth
    signed: Any = response.wsgi_request.user
    assert signed._loopsite_groups == {"reviewers"}


def test_session_of_the_replaced_backend__stays_signed_in() -> None:
    user = user_with_role("reviewer")
    client = signed_in(user)
    session = client.session
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"  # signed in before the change
    session.save()

    response = client.get("/queue/")

    assert response.status_code == 200
    assert response.wsgi_request.user == user


def _prepared(texts: tuple[str, ...]) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [s for (s,) in cursor.fetchall() if any(t in s for t in texts)]


@pytest.mark.configured
def test_user_and_session_reads__postgresql__prepared_in_the_session(reviewer: Any) -> None:
    """Every signed-in request reads its session and its user; their plans cost more than running them, so on
    PostgreSQL both are prepared in the connection's session (loopsite.statements)."""
    client = signed_in(reviewer)
    for _ in range(2):
        assert client.get("/queue/").status_code == 200

    assert len(_prepared(('FROM "django_session"',))) == 1
    assert len(_prepared(('FROM "auth_user"',))) == 1
    assert UserBackend().get_user(reviewer.pk).pk == reviewer.pk  # the prepared read gives the user


@pytest.mark.configured
def test_user_read__preparing_off__bound_on_the_server_not_prepared(reviewer: Any) -> None:
    """DB_PREPARE=off (behind a pooler that cannot keep prepared statements): the same reads, nothing prepared."""
    connection.ensure_connection()
    raw = connection.connection
    before, raw.prepare_threshold = raw.prepare_threshold, None
    try:
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        raw._prepared.clear()  # psycopg's own record of what it prepared, gone with DEALLOCATE ALL
        read = UserBackend().get_user(reviewer.pk)
        assert read is not None and fields(read) == fields(ModelBackend().get_user(reviewer.pk))
        assert _prepared(('FROM "auth_user"',)) == []
    finally:
        raw.prepare_threshold = before
