"""The dashboard in real Chromium: the unfinished week drawn apart as "so far", never as a drop; a new agent's page
says it has no decisions instead of drawing empty charts; the overview's sparklines."""

from datetime import datetime, time, timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.approvals.conftest import log_responded
from tests.factories import make_agent, user_with_role
from tests.test_csp_browser import chart_points, screenshot, signed_in  # noqa: F401 (the fixture)
from thresholds.metrics import agent_tz, week_start_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The chart's datasets as drawn: each one's dash, and for each point its value and whether Chart.js skipped it.
DRAWN = """(el) => Chart.getChart(el).data.datasets.map((d, i) => ({
  label: d.label, dash: d.borderDash || [], partial: !!d.partial,
  points: Chart.getChart(el).getDatasetMeta(i).data.map((p, j) => ({ value: d.data[j], skip: !!p.skip })),
}))"""


def _with_history(agent: Any) -> None:
    """Three finished weeks of answered decisions, and a few this week so far."""
    now = timezone.now()
    monday = datetime.combine(week_start_of(now, agent_tz(agent)), time(), tzinfo=agent_tz(agent))
    for week in (3, 2, 1):
        log_responded(agent, prefix=f"w{week}", n=12, errors=3, start=monday - timedelta(weeks=week, days=-1))
    log_responded(agent, prefix="now", n=3, errors=0, start=max(monday, now - timedelta(hours=2)), step=timedelta(0))


def test_dashboard_agent__unfinished_week__drawn_apart_and_dashed_not_as_a_drop(signed_in: Any) -> None:  # noqa: F811
    agent, _ = make_agent()
    _with_history(agent)
    w = signed_in(user_with_role("reviewer", username="rita"))

    w.visit(f"/dashboard/{agent.agent_id}/?weeks=8")

    assert chart_points(w.page, "#chart-dismissalRate") > 0
    drawn = w.page.locator("#chart-dismissalRate").evaluate(DRAWN)
    line, so_far = drawn[0], drawn[1]
    assert line["points"][-1]["value"] is None and line["points"][-1]["skip"]  # the line stops at the last full week
    assert line["points"][-2]["value"] == 25.0
    assert so_far["partial"] and so_far["dash"] == [5, 4]
    assert [p["value"] for p in so_far["points"][-2:]] == [25.0, 0.0] and not so_far["points"][-1]["skip"]
    ticks = w.page.locator("#chart-dismissalRate").evaluate(
        "(el) => Chart.getChart(el).scales.x.ticks.map((t) => t.label)"
    )
    assert ticks[-1][1] == "so far"
    expect(w.page.locator('.week-choices a[aria-current="page"]')).to_have_text("8")
    expect(w.page.get_by_test_id("range-shown")).to_contain_text("Showing the last 8 weeks")
    screenshot(w.page, "dashboard-agent-history")

    w.visit("/dashboard/")
    expect(w.page.locator("svg.spark polyline.spark-dismissal")).to_have_count(1)
    screenshot(w.page, "dashboard-overview")
    w.checked()
    assert w.problems == []


def test_dashboard_agent__new_agent__no_decisions_yet_and_dates_once_on_an_axis(signed_in: Any) -> None:  # noqa: F811
    agent, _ = make_agent("fresh")
    w = signed_in(user_with_role("reviewer", username="rita"))

    w.visit(f"/dashboard/{agent.agent_id}/")

    expect(w.page.get_by_test_id("no-decisions")).to_have_text(
        "No decisions yet. The weekly numbers start with the first decision fresh logs; the tuner proposes nothing "
        "until two weeks of them have responses."
    )
    expect(w.page.locator("canvas[id^=chart-]")).to_have_count(0)
    expect(w.page.get_by_test_id("health")).to_contain_text("no data")
    expect(w.page.get_by_test_id("health")).not_to_contain_text("healthy")
    assert chart_points(w.page, "#threshold-0") >= 2
    labels = w.page.locator("#threshold-0").evaluate(
        "(el) => Chart.getChart(el).scales.x.ticks.map((t) => t.label).filter((l) => l)"
    )
    assert len(labels) >= 2 and len(labels) == len(set(labels)), labels
    screenshot(w.page, "dashboard-new-agent")
    w.checked()
    assert w.problems == []
