"""Sessions are Django's database sessions, read with one plain SELECT (loopsite/sessions.py): what a session
guards must hold as before."""

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from loopsite.sessions import SessionStore
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


def session_key(client: Client) -> str:
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


def test_session_engine__is_the_plain_select_one() -> None:
    assert settings.SESSION_ENGINE == "loopsite.sessions"


def test_session_read__as_djangos_own(reviewer: Any, django_assert_num_queries: Any) -> None:
    client = signed_in(reviewer)
    client.get("/queue/?sort=newest")  # something of the page's own in the session too
    key = session_key(client)

    with django_assert_num_queries(1):
        data = SessionStore(key).load()

    assert data == DjangoSessionStore(key).load()
    assert data["_auth_user_id"] == str(reviewer.pk) and data["queue_sort"] == "newest"


def test_session_read__unknown_key__empty_and_forgotten(db: None) -> None:
    store = SessionStore("no-such-session-key-0123456789")
    assert store.load() == {}
    assert store.session_key is None  # a save makes a new key rather than taking the one the client made up


def test_queue__session_expired__sent_to_sign_in(reviewer: Any) -> None:
    client = signed_in(reviewer)
    assert client.get("/queue/").status_code == 200

    Session.objects.filter(session_key=session_key(client)).update(expire_date=timezone.now() - timedelta(seconds=1))

    response = client.get("/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_queue__after_sign_out__the_old_session_cookie_lets_nobody_in(reviewer: Any) -> None:
    client = signed_in(reviewer)
    old = session_key(client)
    assert client.post("/accounts/logout/").status_code == 302

    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = old
    response = replay.get("/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_queue__password_changed_elsewhere__other_sessions_signed_out(reviewer: Any) -> None:
    client = signed_in(reviewer)
    assert client.get("/queue/").status_code == 200

    reviewer.set_password("a-new-and-longer-password")
    reviewer.save()

    response = client.get("/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
