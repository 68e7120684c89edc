"""The pages, their charts and the review queue in real Chromium under the Content-Security-Policy: each page
arrives with the policy, does what a user expects (charts drawn with their data, an item answered with a key), and
nothing is refused by the policy, logged as a console error or thrown."""

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.utils import timezone
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.approvals.conftest import log_responded
from tests.factories import make_agent, make_proposal, user_with_role
from tests.web.conftest import log_pending, stored
from tests.web.test_queue_browser import ServerRequests
from thresholds.models import Agent
from tuner.models import Proposal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"  # the factories' password

# Runs in every document before its own scripts: what the policy refuses, kept where the test can read it.
WATCH_POLICY = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} refused ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
});
"""


@dataclass
class Watched:
    """A signed-in page and everything that went wrong on it: policy violations, console errors, script errors."""

    page: Page
    problems: list[str] = field(default_factory=list)

    def visit(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, f"{path}: policy {policy!r}"

    def checked(self) -> None:
        """Adds what the policy refused on the current document (before it is left)."""
        self.problems += [f"{self.page.url}: {v}" for v in self.page.evaluate("window.__csp || []")]


def console_error(w: Watched, message: ConsoleMessage) -> None:
    # The admin's pages name no icon, so Chromium asks for /favicon.ico, which this site does not serve: a 404
    # that is the browser's guess, not the page's doing.
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        w.problems.append(f"console: {message.text} ({message.location.get('url')})")


@pytest.fixture
def signed_in(chromium: Browser, live_server: Any) -> Iterator[Any]:
    """``signed_in(user)``: a page that signed ``user`` in through the sign-in page, watched from its first load."""
    server = ServerRequests()
    request_started.connect(server.started)
    request_finished.connect(server.finished)
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(15_000)
    context.add_init_script(WATCH_POLICY)
    in_flight: set[Any] = set()
    context.on("request", lambda request: in_flight.add(request))
    context.on("requestfinished", lambda request: in_flight.discard(request))
    context.on("requestfailed", lambda request: in_flight.discard(request))
    watched: list[Watched] = []

    def make(user: Any) -> Watched:
        page = context.new_page()
        w = Watched(page)
        page.on("console", lambda m: console_error(w, m))
        page.on("pageerror", lambda exc: w.problems.append(f"script error: {exc}"))
        w.visit("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        w.checked()
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        watched.append(w)
        return w

    yield make
    # The live server shares the test database: leave the pages (a beacon gives a queue claim back) and let the
    # server finish every request before the database is emptied.
    for w in watched:
        w.page.goto("about:blank")
    deadline = time.monotonic() + 10
    while watched and in_flight and time.monotonic() < deadline:
        watched[0].page.wait_for_timeout(20)  # Playwright reports a request's end while it waits
    context.close()
    server.wait_idle()
    request_started.disconnect(server.started)
    request_finished.disconnect(server.finished)


@pytest.fixture
def data(db: None) -> tuple[Agent, Proposal, list[str]]:
    """An agent with a few days of responded decisions (some dismissed) and a pending proposal citing them."""
    agent, _ = make_agent()
    ids = log_responded(agent, prefix="csp", n=12, errors=4, start=timezone.now() - timedelta(days=2))
    return agent, make_proposal(agent, proposed=0.66, evidence_ids=ids, now=timezone.now()), ids


def chart_points(page: Page, selector: str) -> int:
    """Asserts the chart at ``selector`` was drawn (a Chart.js instance on a visible canvas); returns how many of
    its values are neither empty nor zero."""
    canvas = page.locator(selector)
    expect(canvas).to_have_attribute("data-rendered", "true")
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50, f"{selector}: {box}"
    points = canvas.evaluate(
        """(el) => {
          const chart = Chart.getChart(el);
          if (!chart) return -1;
          return chart.data.datasets.reduce((n, d) => n + d.data.filter((v) => v !== null && v !== 0).length, 0);
        }"""
    )
    assert points >= 0, f"{selector}: no Chart.js instance"
    return int(points)


def screenshot(page: Page, name: str) -> None:
    """CSP_SCREENSHOTS=folder keeps a picture of each charted page, to look at by hand."""
    if folder := os.environ.get("CSP_SCREENSHOTS"):
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def test_dashboard_and_proposal_charts__drawn_under_the_policy(signed_in: Any, data: Any) -> None:
    agent, proposal, _ = data
    w = signed_in(user_with_role("admin", username="root-admin"))

    w.visit("/dashboard/")
    expect(w.page.get_by_role("link", name=agent.agent_id)).to_be_visible()
    w.checked()

    w.visit(f"/dashboard/{agent.agent_id}/")
    for key in ("dismissalRate", "escalationRate", "responseRate", "acceptanceRate"):
        chart_points(w.page, f"#chart-{key}")
    assert chart_points(w.page, "#chart-dismissalRate") > 0
    assert chart_points(w.page, "#chart-responseRate") > 0
    # each threshold's live value, from its first version to today
    assert chart_points(w.page, "#threshold-0") >= 2
    assert chart_points(w.page, "#threshold-1") >= 2
    screenshot(w.page, "dashboard-agent")
    w.checked()

    w.visit(f"/proposals/{proposal.pk}/")
    assert chart_points(w.page, "#threshold-chart") > 0
    expect(w.page.get_by_test_id("sample-entry").first).to_be_visible()
    screenshot(w.page, "proposal")
    w.checked()

    w.visit(f"/admin/tuner/proposal/{proposal.pk}/change/")
    assert chart_points(w.page, "#threshold-chart") > 0
    w.checked()

    assert w.problems == []


def test_queue__answered_by_key_under_the_policy(signed_in: Any, data: Any) -> None:
    agent, _, _ = data
    ids = log_pending(agent.agent_id, 2, decision={"confidence": 0.72, "thresholdUsed": 0.6})
    admin = user_with_role("admin", username="root-admin")
    w = signed_in(admin)

    w.visit("/queue/")
    first = w.page.locator(f'#queue-list > .item[data-entry-id="{ids[0]}"]')
    expect(first).to_have_class(re.compile(r"\bfocused\b"))
    # htmx loaded the figures (hx-trigger="load") and the confidence bar is drawn to scale
    expect(w.page.locator('[data-stat="pending"]')).to_have_text("2")
    track, fill = (first.locator(f".confbar .{part}").bounding_box() for part in ("track", "fill"))
    assert track and fill and fill["width"] / track["width"] == pytest.approx(0.72, abs=0.02)
    screenshot(w.page, "queue")

    w.page.keyboard.press("a")
    expect(first).to_have_count(0)
    expect(w.page.locator(".notices")).to_contain_text(ids[0])
    expect(w.page.locator(f'#queue-list > .item.focused[data-entry-id="{ids[1]}"]')).to_be_visible()
    w.checked()

    deadline = time.monotonic() + 10
    while stored(ids[0]).response_action is None and time.monotonic() < deadline:
        time.sleep(0.05)
    d = stored(ids[0])
    assert (d.response_action, d.responder_id, d.response_source) == ("approve", admin.username, "web")
    assert w.problems == []


def test_audit_decision_admin_and_api_docs__no_violation(signed_in: Any, data: Any) -> None:
    agent, _, ids = data
    w = signed_in(user_with_role("admin", username="root-admin"))

    w.visit(f"/audit/?agent={agent.agent_id}")
    expect(w.page.get_by_test_id("audit-table")).to_be_visible()
    expect(w.page.get_by_label("Agent")).to_have_value(agent.agent_id)
    w.checked()

    w.visit(f"/decisions/{ids[0]}/")
    expect(w.page.get_by_test_id("response-history")).to_be_visible()
    w.checked()

    w.visit("/admin/")
    expect(w.page.locator("#site-name")).to_be_visible()
    w.checked()

    w.visit("/api/docs/")
    expect(w.page.locator(".swagger-ui .info .title")).to_contain_text("loopsite API")
    w.checked()

    assert w.problems == []
