"""The audit trail page: 50 events a page, newest first, filtered by agent, event type, threshold and UTC days; the
CSV export holds what the filters let through, every page of it."""

import csv
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from approvals.audit import audit_record
from approvals.models import AuditEvent
from tests.factories import NOW, make_agent
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db

MANUAL, LOCKED = AuditEvent.Kind.CONFIG_MANUAL, AuditEvent.Kind.AGENT_LOCKED


@pytest.fixture
def trail(agent: Any, approver: Any) -> dict[str, list[AuditEvent]]:
    """120 events of triage, one an hour back from NOW (every third a lock), and 5 of fraud ten days earlier."""
    fraud, _key = make_agent("fraud")
    events: dict[str, list[AuditEvent]] = {"triage": [], "fraud": []}
    for i in range(120):
        at = NOW - timedelta(hours=120 - i)
        kind = LOCKED if i % 3 == 0 else MANUAL
        events["triage"].append(audit_record(kind=kind, agent=agent, at=at, actor=approver, message=f"event {i:03d}"))
    for i in range(5):
        at = NOW - timedelta(days=15, hours=5 - i)
        events["fraud"].append(audit_record(kind=MANUAL, agent=fraud, at=at, actor=approver, message=f"fraud {i}"))
    return events


def notes(response: Any) -> list[str]:
    return [e.message for e in response.context["events"]]


def test_audit_page__fifty_a_page_newest_first(trail: Any, approver: Any) -> None:
    client = signed_in(approver)
    first = client.get("/audit/")
    assert first.status_code == 200
    assert notes(first)[:2] == ["event 119", "event 118"] and len(notes(first)) == 50
    html = first.content.decode()
    assert "125 events" in html and "page 1 of 3" in html
    assert 'href="?page=2"' in html and "Older" in html
    last = client.get("/audit/?page=3")
    assert notes(last)[-1] == "fraud 0" and len(notes(last)) == 25
    assert notes(client.get("/audit/?page=99")) == notes(last)  # out of range: the last page
    assert notes(client.get("/audit/?page=x")) == notes(first)


def test_audit_page__filters__agent_kind_and_days__and_page_links_keep_them(trail: Any, approver: Any) -> None:
    client = signed_in(approver)
    assert notes(client.get("/audit/?agent=fraud")) == [f"fraud {i}" for i in (4, 3, 2, 1, 0)]
    locks = client.get(f"/audit/?agent=triage&kind={LOCKED}")
    assert len(notes(locks)) == 40 and all(e.kind == LOCKED for e in locks.context["events"])
    assert locks.context["page"].paginator.num_pages == 1
    day = (NOW - timedelta(hours=30)).date()
    one_day = client.get(f"/audit/?from={day.isoformat()}&to={day.isoformat()}")
    assert {e.at.date() for e in one_day.context["events"]} == {day}
    assert one_day.context["page"].paginator.count == 24
    everything_before = client.get(f"/audit/?to={(NOW - timedelta(days=10)).date().isoformat()}")
    assert notes(everything_before) == [f"fraud {i}" for i in (4, 3, 2, 1, 0)]
    # the links to other pages keep the filters
    manual = client.get(f"/audit/?kind={MANUAL}")
    assert manual.context["page"].paginator.count == 85
    html = manual.content.decode()
    assert f'href="?kind={MANUAL}&amp;page=2"' in html
    second = client.get(f"/audit/?kind={MANUAL}&page=2")
    assert all(e.kind == MANUAL for e in second.context["events"]) and len(notes(second)) == 35
    # an unknown event type or agent, or a malformed day, is no filter
    assert client.get("/audit/?kind=nonsense&agent=nobody&from=yesterday").context["page"].paginator.count == 125


def test_audit_page__csv_export__honours_the_same_filters_all_pages(trail: Any, approver: Any) -> None:
    client = signed_in(approver)
    page = client.get(f"/audit/?agent=triage&kind={MANUAL}").content.decode()
    link = re.search(r'href="(\?[^"]*export=csv)"', page)
    assert link is not None
    exported = client.get("/audit/" + link.group(1).replace("&amp;", "&"))
    assert exported["Content-Disposition"] == 'attachment; filename="audit-triage.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert len(rows) == 80 and {r["kind"] for r in rows} == {MANUAL} and {r["agentId"] for r in rows} == {"triage"}
    day = (NOW - timedelta(hours=30)).date().isoformat()
    dated = client.get(f"/audit/?from={day}&to={day}&export=csv").content.decode()
    assert len(list(csv.DictReader(io.StringIO(dated)))) == 24


def test_audit_page__long_notes__wrap_in_a_fixed_layout_without_inline_style(agent: Any, approver: Any) -> None:
    audit_record(kind=MANUAL, agent=agent, at=NOW, actor=approver, message="x" * 2000, evidence_entry_ids=["e" * 80])
    html = signed_in(approver).get("/audit/").content.decode()
    assert 'class="audit-table"' in html and 'data-label="Note"' in html
    assert "style=" not in html
    css = (Path(settings.BASE_DIR) / "static" / "css" / "approvals.css").read_text()
    assert ".audit-table { table-layout: fixed; }" in css and "overflow-wrap: anywhere" in css
    assert "@media (max-width: 700px)" in css
