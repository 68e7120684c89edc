"""The queue's list is read with a plain cursor (auditlog.selectors._queue_rows): the same rows, in the same order,
with the values a queryset gives, under every filter the page has."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from auditlog.models import Decision
from auditlog.selectors import ITEM_COLUMNS, Cursor, QueueFilters, queue_page
from tests.factories import make_agent
from tests.web.conftest import log_pending

pytestmark = pytest.mark.django_db

NO_FILTERS: dict[str, Any] = dict(
    agent_id=None, action=None, confidence_min=None, confidence_max=None, rule=None, date_from=None, date_to=None
)


@pytest.fixture
def logged(agent: Any) -> None:
    make_agent("other")
    now = timezone.now()
    log_pending(agent.agent_id, 7, minutes_apart=3, ago=timedelta(hours=30), confidence=0.91)
    log_pending("other", 6, minutes_apart=5, ago=timedelta(hours=2), matched_rules=["new_device", "night"])
    log_pending(agent.agent_id, 5, minutes_apart=7, ago=timedelta(minutes=5), features={"amount_z": 2.5, "n": -1})
    # Claimed by somebody else until later: not the reviewer's to take.
    Decision.objects.filter(entry_id__in=Decision.objects.order_by("seq").values("entry_id")[:2]).update(
        claimed_by="someone", claimed_until=now + timedelta(minutes=10)
    )


def by_queryset(filters: QueueFilters, *, cursor: Cursor | None, newest_first: bool, limit: int) -> list[Any]:
    """What the list held when it was read through the ORM: model instances, by the same conditions."""
    from auditlog.selectors import _after, queue_filtered

    qs = _after(queue_filtered(filters=filters, reviewer="rita", now=timezone.now()), cursor, newest_first=newest_first)
    order = ("-timestamp", "-seq") if newest_first else ("timestamp", "seq")
    return list(qs.order_by(*order)[:limit])


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"agent_id": "other"},
        {"agent_id": "nobody"},
        {"action": "flag"},
        {"confidence_min": 0.9},
        {"confidence_max": 0.5},
        {"rule": "night"},
        {"date_from": (timezone.now() - timedelta(days=1)).date()},
        {"date_to": (timezone.now() - timedelta(days=1)).date()},
    ],
)
@pytest.mark.parametrize("newest_first", [False, True])
def test_queue_rows__as_the_queryset_reads_them(logged: Any, filters: dict[str, Any], newest_first: bool) -> None:
    chosen = QueueFilters(**{**NO_FILTERS, **filters})
    now = timezone.now()
    pages, cursor = [], None
    while True:  # every page, following the cursor, three items a page
        page = queue_page(filters=chosen, reviewer="rita", now=now, cursor=cursor, limit=3, newest_first=newest_first)
        expected = by_queryset(chosen, cursor=cursor, newest_first=newest_first, limit=3)
        assert [[getattr(i.decision, c) for c in ITEM_COLUMNS] for i in page.items] == [
            [getattr(d, c) for c in ITEM_COLUMNS] for d in expected
        ]
        pages.append(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    shown = [i.decision for p in pages for i in p.items]
    assert all(d.timestamp.tzinfo is not None for d in shown)  # aware, on SQLite too
    assert all(isinstance(d.features, dict) and isinstance(d.matched_rules, list) for d in shown)
    if not filters:
        assert len(shown) == 16  # 18 logged, 2 claimed by someone else
        assert [a.agent_id for a in pages[0].agents] == ["other", "triage"]
        assert {d.agent_id for d in shown} == {a.pk for a in pages[0].agents}


def test_queue_rows__conditions_nothing_can_meet__no_rows(logged: Any) -> None:
    from auditlog.selectors import _queue_rows, queue_filtered

    qs = queue_filtered(filters=QueueFilters(**NO_FILTERS), reviewer="rita", now=timezone.now())

    assert len(_queue_rows(qs, newest_first=False, limit=5)) == 5
    assert _queue_rows(qs.filter(seq__in=[]), newest_first=False, limit=5) == []
