"""A reviewer following an emailed proposal link, in real Chromium: the styled 403 in the site's layout, a way on,
and one log line without a traceback."""

import logging
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from playwright.sync_api import Browser, expect

from tests.factories import make_proposal
from tests.web.test_queue_browser import ServerRequests

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"


def test_browser__reviewer_opens_an_emailed_proposal_link__styled_403_with_a_way_on(
    chromium: Browser, live_server: Any, agent: Any, reviewer: Any, approver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proposal = make_proposal(agent)
    caplog.set_level(logging.INFO)
    server = ServerRequests()
    request_started.connect(server.started)
    request_finished.connect(server.finished)
    context = chromium.new_context(base_url=live_server.url)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"/proposals/{proposal.pk}/")  # signed out: to the sign-in page, then back to the link
        page.fill("#id_username", "rita")
        page.fill("#id_password", PASSWORD)
        with page.expect_response(lambda r: r.url.endswith(f"/proposals/{proposal.pk}/")) as answer:
            page.click("button[type=submit]")
        assert answer.value.status == 403
        expect(page.locator("header.topbar")).to_be_visible()  # the site's layout, styled
        expect(page.locator("header.topbar")).to_have_css("position", "sticky")
        card = page.get_by_test_id("error-403")
        expect(card).to_contain_text("You're signed in as rita, a reviewer.")
        expect(card).to_contain_text("Proposals and the audit trail are for approvers")
        expect(card).to_contain_text("Ask alice")
        page.get_by_role("link", name="Go to the review queue").click()
        page.wait_for_url("**/queue/")
        expect(page.locator("h1")).to_have_text("Review queue")
        server.wait_idle()
    finally:
        context.close()
        server.wait_idle()
        request_started.disconnect(server.started)
        request_finished.disconnect(server.finished)
    assert errors == []
    refusals = [r for r in caplog.records if "denied" in r.getMessage() or "Forbidden" in r.getMessage()]
    assert [(r.name, r.getMessage()) for r in refusals] == [("loopsite.errors", "permission.denied")]
    assert all(r.exc_info is None for r in caplog.records)
    assert "Traceback" not in caplog.text
