"""Each process keeps the queue's rows converted (``auditlog.selectors._row_kept``) and its items rendered
(``auditlog.views_queue._item_parts_kept``), all but the CSRF input and the age: a kept item must read as one
rendered afresh, follow its row's and its agent's changes, and both stay bounded."""

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from auditlog import selectors, views_queue
from auditlog.claims import claim_acquire
from auditlog.selectors import QueueFilters, queue_page
from auditlog.views_queue import item_html
from tests.web.conftest import log_pending, signed_in
from tests.web.test_queue_item_html import CASES


@pytest.fixture(autouse=True)
def nothing_kept() -> None:
    views_queue._items_kept.clear()
    selectors._rows_kept.clear()


def _shown(item: Any, *, now: Any, token: str) -> str:
    csrf_input = f'<input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
    return item_html(item, respond_url="/queue/respond/", csrf_input=csrf_input, now=now)


@pytest.mark.parametrize("case", [name for name in CASES if not name.startswith("amending")])
def test_item_kept__reads_as_rendered_afresh__with_this_pages_token_and_age(case: str) -> None:
    item = dataclasses.replace(CASES[case](), fingerprint=("case", case))
    now = timezone.now()
    _shown(item, now=now, token="first-token")  # kept

    later = now + timedelta(days=3, hours=2)
    shown = _shown(item, now=later, token="second-token")

    assert views_queue._items_kept  # it was kept, and read back
    assert shown == _shown(dataclasses.replace(item, fingerprint=None), now=later, token="second-token")
    assert "second-token" in shown and "first-token" not in shown


@pytest.mark.django_db
def test_queue_page__agent_turned_binary__its_kept_items_show_thumbs(
    agent: Any, reviewer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    log_pending(agent.agent_id, 3)
    client = signed_in(reviewer)
    before = client.get("/queue/").content.decode()
    assert "Approve <kbd>a</kbd>" in before and "Thumbs up" not in before

    with django_capture_on_commit_callbacks(execute=True):  # the agents' stamp goes when the change commits
        agent.binary_mode = True
        agent.save()
    after = client.get("/queue/").content.decode()

    assert after.count('class="item binary"') == 3
    assert after.count("Thumbs up <kbd>a</kbd>") == 3 and "Approve <kbd>a</kbd>" not in after


def test_items_kept__at_most_items_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views_queue, "ITEMS_KEPT", 5)
    now = timezone.now()
    for n in range(12):
        item = dataclasses.replace(CASES["plain"](), fingerprint=("n", n))
        _shown(item, now=now, token="t")
        assert 1 <= len(views_queue._items_kept) <= 5


@pytest.mark.django_db
def test_queue_page__claimed_after_it_was_kept__shows_the_claim(agent: Any) -> None:
    first, *_ = log_pending(agent.agent_id, 3)
    now = timezone.now()
    before = queue_page(filters=QueueFilters(), reviewer="rita", now=now)
    assert selectors._rows_kept and not any(i.claimed_by_me for i in before.items)

    assert claim_acquire(entry_id=first, agent_id=agent.agent_id, reviewer="rita", now=now).won
    after = queue_page(filters=QueueFilters(), reviewer="rita", now=now)

    assert [i.entry_id for i in after.items if i.claimed_by_me] == [first]
    assert after.items[0].decision.claimed_by == "rita"
    taken = queue_page(filters=QueueFilters(), reviewer="sam", now=now)  # someone else's claim: not offered
    assert [i.entry_id for i in taken.items] == [i.entry_id for i in after.items[1:]]


@pytest.mark.django_db
def test_rows_kept__at_most_rows_kept(agent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "ROWS_KEPT", 4)
    log_pending(agent.agent_id, 10)

    page = queue_page(filters=QueueFilters(), reviewer="rita", now=timezone.now())

    assert len(page.items) == 10
    assert 1 <= len(selectors._rows_kept) <= 4
