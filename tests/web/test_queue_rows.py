"""The queue's list and its filtered count are statements compiled once per shape (auditlog.selectors._queue_list,
_pending_count): the same rows, in the same order, with the values a queryset gives, under every filter the page has,
as the queue's conditions written out with the ORM here read them."""

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from auditlog.models import Decision
from auditlog.selectors import ITEM_COLUMNS, Cursor, QueueFilters, queue_page, queue_stats
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
    log_pending(agent.agent_id, 7, minutes_apart=3, ago=timedelta(hours=30), decision={"confidence": 0.91})
    log_pending("other", 6, minutes_apart=5, ago=timedelta(hours=2), context={"matchedRules": ["new_device", "night"]})
    log_pending(
        agent.agent_id, 5, minutes_apart=7, ago=timedelta(minutes=5), context={"features": {"amount_z": 2.5, "n": -1}}
    )
    # Claimed by somebody else until later: not the reviewer's to take.
    Decision.objects.filter(entry_id__in=Decision.objects.order_by("seq").values("entry_id")[:2]).update(
        claimed_by="someone", claimed_until=now + timedelta(minutes=10)
    )


def matching(filters: QueueFilters) -> Any:
    """Pending decisions under ``filters``, written with the ORM as the page's filters read."""
    qs = Decision.objects.filter(queued=True, response_action__isnull=True)
    if filters.agent_id:
        qs = qs.filter(agent__agent_id=filters.agent_id)
    if filters.action:
        qs = qs.filter(action=filters.action)
    if filters.confidence_min is not None:
        qs = qs.filter(confidence__gte=filters.confidence_min)
    if filters.confidence_max is not None:
        qs = qs.filter(confidence__lte=filters.confidence_max)
    if filters.rule:
        # SQLite has no JSON containment: every pending row is read and its rules looked at.
        if connection.vendor == "postgresql":
            qs = qs.filter(matched_rules__contains=[filters.rule])
        else:
            qs = qs.filter(seq__in=[d.seq for d in qs if filters.rule in d.matched_rules])
    if filters.date_from:
        qs = qs.filter(timestamp__gte=datetime.combine(filters.date_from, time.min, tzinfo=UTC))
    if filters.date_to:
        qs = qs.filter(timestamp__lt=datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=UTC))
    return qs


def by_queryset(filters: QueueFilters, *, cursor: Cursor | None, newest_first: bool, limit: int) -> list[Any]:
    """What the list holds read through the ORM: model instances, by the same conditions."""
    now = timezone.now()
    qs = matching(filters).filter(Q(claimed_by__isnull=True) | Q(claimed_by="rita") | Q(claimed_until__lte=now))
    if cursor is not None:
        at, seq = cursor.timestamp, cursor.seq
        if newest_first:
            qs = qs.filter(Q(timestamp__lt=at) | Q(timestamp=at, seq__lt=seq))
        else:
            qs = qs.filter(Q(timestamp__gt=at) | Q(timestamp=at, seq__gt=seq))
    order = ("-timestamp", "-seq") if newest_first else ("timestamp", "seq")
    return list(qs.order_by(*order)[:limit])


@pytest.mark.parametrize(
    ("filters", "shown_count"),
    [
        ({}, 16),  # 18 logged, 2 claimed by someone else
        ({"agent_id": "other"}, 6),
        ({"agent_id": "nobody"}, 0),
        ({"action": "flag"}, 16),
        ({"confidence_min": 0.9}, 5),
        ({"confidence_max": 0.8}, 11),
        ({"rule": "night"}, 6),
        ({"date_from": (timezone.now() - timedelta(days=1)).date()}, None),  # the day's count depends on the hour
        ({"date_to": (timezone.now() - timedelta(days=1)).date()}, None),
    ],
)
@pytest.mark.parametrize("newest_first", [False, True])
def test_queue_rows__as_the_queryset_reads_them(
    logged: Any, filters: dict[str, Any], shown_count: int | None, newest_first: bool
) -> None:
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
    assert shown_count is None or len(shown) == shown_count
    if not filters:
        assert [a.agent_id for a in pages[0].agents] == ["other", "triage"]
        assert {d.agent_id for d in shown} == {a.pk for a in pages[0].agents}


@pytest.mark.parametrize(
    "filters",
    [
        {"agent_id": "other"},
        {"agent_id": "nobody"},
        {"action": "flag", "confidence_min": 0.9},
        {"confidence_max": 0.5, "rule": "night"},
        {"rule": "new_device", "date_from": (timezone.now() - timedelta(days=1)).date()},
        {"date_to": (timezone.now() - timedelta(days=1)).date()},
    ],
)
def test_queue_stats__filtered_pending__as_the_queryset_counts(logged: Any, filters: dict[str, Any]) -> None:
    chosen = QueueFilters(**{**NO_FILTERS, **filters})

    stats = queue_stats(reviewer="rita", now=timezone.now(), filters=chosen)

    assert stats.filtered
    assert stats.pending == matching(chosen).count()  # claimed ones too: pending is everyone's backlog


def test_queue_rows__a_rule_with_like_wildcards__matches_only_itself(agent: Any) -> None:
    """The rule is a bound value, compared whole: ``%`` and ``_`` in it are not wildcards."""
    log_pending(agent.agent_id, 1, context={"matchedRules": ["night_%"]})
    log_pending(agent.agent_id, 1, context={"matchedRules": ["nightXowl"]})
    chosen = QueueFilters(**{**NO_FILTERS, "rule": "night_%"})

    page = queue_page(filters=chosen, reviewer="rita", now=timezone.now())

    assert [i.decision.matched_rules for i in page.items] == [["night_%"]]
    assert queue_stats(reviewer="rita", now=timezone.now(), filters=chosen).pending == 1
