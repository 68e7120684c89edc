"""The error pages (403, 404, 500 in the site's layout, saying what to do instead), a refusal logged as one line
without a traceback, where sign-in lands, and the menu's counts."""

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.template.loader import render_to_string
from django.test import Client

from approvals.services import proposal_decide
from loopsite.context_processors import nav_counts_forget
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from tests.web.conftest import log_pending, signed_in

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # the factories' password


@pytest.fixture
def approver2(db: None) -> Any:
    return user_with_role("approver", username="bob")


def refusal_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO and ("denied" in r.getMessage() or "Forbidden" in r.getMessage())
    ]


def test_403__reviewer_opens_a_proposal__styled_page_says_who_and_where_to_go(
    agent: Any, reviewer: Any, approver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proposal = make_proposal(agent)
    caplog.set_level(logging.INFO)
    response = signed_in(reviewer).get(f"/proposals/{proposal.pk}/")
    assert response.status_code == 403
    html = response.content.decode()
    assert 'class="topbar"' in html and "css/site.css" in html  # the site's layout
    assert "signed in as <strong>rita</strong>, a reviewer" in html
    assert "Proposals and the audit trail are for approvers" in html and "Ask alice" in html
    assert 'href="/queue/"' in html and "Go to the review queue" in html
    # one line, no traceback, and not a second "Forbidden" line from django.request
    lines = refusal_records(caplog)
    assert [(r.name, r.getMessage(), r.levelno) for r in lines] == [
        ("loopsite.errors", "permission.denied", logging.INFO)
    ]
    assert lines[0].exc_info is None and lines[0].path == f"/proposals/{proposal.pk}/"  # type: ignore[attr-defined]
    assert "Traceback" not in caplog.text


def test_403__user_without_role__no_link_that_would_refuse_again(db: None) -> None:
    nobody = user_with_role("reviewer", username="nobody")
    nobody.groups.clear()
    html = signed_in(nobody).get("/queue/").content.decode()
    assert "someone without a role yet" in html and "Ask an admin" in html
    assert "Go to the review queue" not in html


def test_403__api_path__json_body(db: None) -> None:
    from django.core.exceptions import PermissionDenied
    from django.test import RequestFactory

    from loopsite.errors import forbidden

    response = forbidden(RequestFactory().get("/api/v1/nothing"), PermissionDenied("no"))
    assert response.status_code == 403 and response["Content-Type"] == "application/json"


def test_404__page__in_the_layout_with_a_way_on(reviewer: Any) -> None:
    response = signed_in(reviewer).get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'class="topbar"' in html and "Nothing here" in html and "/no/such/page/" in html
    assert 'href="/"' in html


def test_404__api__still_json(db: None) -> None:
    response = Client().get("/api/v1/no-such-thing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_500__renders_without_a_request_or_a_database(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        html = render_to_string("500.html")
    assert 'class="topbar"' in html and "Something went wrong on our side" in html and 'href="/queue/"' in html


def test_500__server_error_view__status_and_page() -> None:
    from django.test import RequestFactory
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500 and b"Something went wrong on our side" in response.content


# --- where sign-in lands ----------------------------------------------------------------------------------


def sign_in(username: str) -> Any:
    return Client().post("/accounts/login/", {"username": username, "password": PASSWORD})


def test_landing__reviewer__queue_even_with_proposals_waiting(agent: Any, reviewer: Any) -> None:
    make_proposal(agent)
    response = sign_in("rita")
    assert response.status_code == 302
    assert Client().get("/").status_code == 302  # anonymous: sign in
    assert signed_in(reviewer).get("/")["Location"] == "/queue/"


def test_landing__approver__proposals_when_any_wait_else_queue(agent: Any, approver: Any, approver2: Any) -> None:
    assert signed_in(approver).get("/")["Location"] == "/queue/"
    proposal = make_proposal(agent)
    response = sign_in("alice")
    assert response["Location"] == "/"
    assert signed_in(approver).get("/")["Location"] == "/proposals/"
    proposal_decide(proposal=proposal, actor=approver, decision="reject", rationale="not now", now=NOW)
    assert signed_in(approver).get("/")["Location"] == "/queue/"


def test_landing__approver__not_for_proposals_they_may_not_decide(agent: Any, approver: Any, approver2: Any) -> None:
    agent.approvers.set([approver2])  # only bob decides triage's proposals
    make_proposal(agent)
    make_proposal(agent, threshold="escalate_threshold", proposed=0.8, created_by=approver2)
    assert signed_in(approver).get("/")["Location"] == "/queue/"
    admin = user_with_role("admin", username="root")
    assert signed_in(admin).get("/")["Location"] == "/proposals/"


def test_landing__next_wins(agent: Any, approver: Any) -> None:
    make_proposal(agent)
    response = Client().post("/accounts/login/?next=/dashboard/", {"username": "alice", "password": PASSWORD})
    assert response["Location"] == "/dashboard/"


# --- the menu's counts ------------------------------------------------------------------------------------


def test_menu__reviewer_sees_the_queue_count_approver_both(agent: Any, reviewer: Any, approver: Any) -> None:
    log_pending(agent.agent_id, 3)
    make_proposal(agent)
    make_proposal(agent, threshold="escalate_threshold", proposed=0.8)
    html = signed_in(reviewer).get("/dashboard/").content.decode()
    assert 'data-nav-count="queue" title="3 waiting">3<' in html
    assert 'data-nav-count="proposals"' not in html
    html = signed_in(approver).get("/dashboard/").content.decode()
    assert 'data-nav-count="queue" title="3 waiting">3<' in html
    assert 'data-nav-count="proposals" title="2 waiting">2<' in html


def test_menu__nothing_waiting__no_badge_and_counts_cached_briefly(agent: Any, approver: Any) -> None:
    client = signed_in(approver)
    html = client.get("/dashboard/").content.decode()
    assert "data-nav-count" not in html
    log_pending(agent.agent_id, 2, ago=timedelta(minutes=5))
    assert "data-nav-count" not in client.get("/dashboard/").content.decode()  # still the cached 0
    nav_counts_forget()  # this process's copy gone: the shared cache's is still the 0
    assert "data-nav-count" not in client.get("/dashboard/").content.decode()
    cache.delete("nav-queue-pending")
    assert "data-nav-count" not in client.get("/dashboard/").content.decode()  # this process's copy again
    nav_counts_forget()
    assert 'data-nav-count="queue" title="2 waiting">2<' in client.get("/dashboard/").content.decode()


def test_menu__counts_cost_two_queries_at_most(agent: Any, approver: Any) -> None:
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext

    from loopsite.context_processors import navigation

    make_agent("fraud")
    request = RequestFactory().get("/dashboard/")
    request.user = approver
    approver._loopsite_groups = {"approvers"}  # the role check's own query is not the counts'
    with CaptureQueriesContext(connection) as queries:
        links = navigation(request)["nav_links"]
    assert len(queries) <= 2
    assert {link["label"]: link["count"] for link in links if link["count"] is not None} == {"Queue": 0, "Proposals": 0}
