"""The reviewer's last answer (the queue's undo link) is kept per reviewer in the shared cache
(``auditlog.selectors.last_answer``) and read again whenever an answer is written (``last_answers_changed``): the
link must read exactly as the database says, warm or cold, after an answer, an undo, another reviewer's answer, an
approver's amendment, a bulk or logged response, and a change made behind the services' back."""

from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from auditlog.models import Decision
from auditlog.selectors import last_answer, last_answer_stamp_key
from auditlog.services import BulkResponse, decision_log, last_answers_changed, response_record_bulk
from loopsite.cache import CacheUnavailable
from loopsite.models import OutboxMessage
from tests.factories import entry, user_with_role
from tests.web.conftest import HX, log_pending, signed_in, stored

pytestmark = pytest.mark.django_db


def undo_link(client: Any) -> str | None:
    """``agent:entry (answer)`` of the page's undo link, or None when there is none."""
    page = client.get("/queue/").content.decode()
    if 'data-undo="' not in page:
        return None
    key = page.split('data-undo="', 1)[1].split('"', 1)[0]
    answer = page.split("Change your last answer (", 1)[1].split(")", 1)[0]
    return f"{key} ({answer})"


def answer(client: Any, entry_id: str, response: str, **more: str) -> None:
    done = client.post("/queue/respond/", {"entry_id": entry_id, "response": response, **more}, headers=HX)
    assert done.status_code == 200


def probes(captured: CaptureQueriesContext) -> int:
    """How many reads of the reviewer's answers over every partition (the query the cache spares)."""
    return sum('"responder_id" =' in q["sql"] and "ORDER BY" in q["sql"] for q in captured.captured_queries)


def test_undo_link__after_an_answer__offered_though_none_was_kept(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    assert undo_link(client) is None  # "no answer" is kept now
    answer(client, pending[0], "dismiss")
    assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    answer(client, pending[1], "approve")
    assert undo_link(client) == f"triage:{pending[1]} ({pending[1]}: approve)"


def test_undo_link__after_undo__names_the_changed_answer(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    answer(client, pending[0], "dismiss")
    assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    answer(client, pending[0], "modify", modify_to="escalate", amends="1")
    assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: modify → escalate)"


def test_undo_link__another_reviewers_answer__each_keeps_their_own(reviewer: Any, pending: list[str]) -> None:
    rita, ron = signed_in(reviewer), signed_in(user_with_role("reviewer", username="ron"))
    answer(rita, pending[0], "dismiss")
    assert undo_link(rita) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    assert undo_link(ron) is None
    answer(ron, pending[1], "approve")
    assert undo_link(rita) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    assert undo_link(ron) == f"triage:{pending[1]} ({pending[1]}: approve)"


def test_undo_link__approver_amends_my_answer__my_answer_before_it_is_offered(
    reviewer: Any, approver: Any, pending: list[str]
) -> None:
    rita, alice = signed_in(reviewer), signed_in(approver)
    answer(rita, pending[0], "dismiss")
    answer(rita, pending[1], "dismiss")
    assert undo_link(rita) == f"triage:{pending[1]} ({pending[1]}: dismiss)"
    # An approver may amend anyone's answer; it is then theirs, and no longer rita's to undo.
    answer(alice, pending[1], "approve", amends="1")
    assert stored(pending[1]).responder_id == "alice"
    assert undo_link(rita) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    assert undo_link(alice) == f"triage:{pending[1]} ({pending[1]}: approve)"


def test_undo_link__cold_cache__read_from_the_database_then_kept(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    answer(client, pending[0], "escalate")
    cache.clear()
    with CaptureQueriesContext(connection) as cold:
        assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: escalate)"
    with CaptureQueriesContext(connection) as warm:
        assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: escalate)"
    assert (probes(cold), probes(warm)) == (1, 0)


def test_last_answer__kept__a_warm_read_is_one_row_by_its_key_or_nothing(reviewer: Any, pending: list[str]) -> None:
    now = timezone.now()
    assert last_answer(reviewer="rita", now=now) is None
    with CaptureQueriesContext(connection) as none_kept:
        assert last_answer(reviewer="rita", now=now) is None
    assert len(none_kept.captured_queries) == 0

    answer(signed_in(reviewer), pending[0], "dismiss")
    now = timezone.now()
    assert last_answer(reviewer="rita", now=now).entry_id == pending[0]  # type: ignore[union-attr]
    with CaptureQueriesContext(connection) as kept:
        found = last_answer(reviewer="rita", now=now)
    assert found is not None and (found.entry_id, found.agent_id) == (pending[0], "triage")
    assert probes(kept) == 0 and len(kept.captured_queries) == 1


def test_last_answer__window__passes_without_a_query_and_never_back_in_time(reviewer: Any, pending: list[str]) -> None:
    answer(signed_in(reviewer), pending[0], "dismiss")
    now = timezone.now()
    assert last_answer(reviewer="rita", now=now) is not None
    later = now + timedelta(hours=24, minutes=1)
    with CaptureQueriesContext(connection) as captured:
        assert last_answer(reviewer="rita", now=later) is None
    assert len(captured.captured_queries) == 0

    # "No answer since t" says nothing about the time before t: a read for an earlier moment asks the database.
    assert last_answer(reviewer="ron", now=now) is None
    with CaptureQueriesContext(connection) as earlier:
        assert last_answer(reviewer="ron", now=now - timedelta(hours=1)) is None
    assert probes(earlier) == 1


def test_last_answer__row_changed_behind_the_services_back__not_trusted(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    answer(client, pending[0], "dismiss")
    answer(client, pending[1], "approve")
    assert undo_link(client) == f"triage:{pending[1]} ({pending[1]}: approve)"
    Decision.objects.filter(entry_id=pending[1]).update(responder_id="someone-else")
    assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    Decision.objects.filter(entry_id=pending[0]).update(responded_at=timezone.now() - timedelta(minutes=5))
    assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    Decision.objects.filter(entry_id=pending[0]).update(response_action=None, responder_id=None, responded_at=None)
    assert undo_link(client) is None


def test_last_answer__bulk_and_logged_responses__seen(agent: Any) -> None:
    now = timezone.now()
    ids = log_pending(agent.agent_id, 2, now=now)
    assert last_answer(reviewer="sim", now=now) is None
    raw: dict[str, object] = {"action": "approve", "respondedAt": now.isoformat()}
    assert response_record_bulk(items=[BulkResponse(entry_id=ids[0], raw=raw, responder_id="sim")], now=now) == 1
    assert last_answer(reviewer="sim", now=now).entry_id == ids[0]  # type: ignore[union-attr]

    assert last_answer(reviewer="rita", now=now) is None
    response = {"action": "dismiss", "respondedAt": now.isoformat(), "responderId": "rita"}
    body = entry(agent.agent_id, id="with-answer", timestamp=(now - timedelta(hours=1)).isoformat())
    decision_log(raw={**body, "humanResponse": response}, now=now)
    assert last_answer(reviewer="rita", now=now).entry_id == "with-answer"  # type: ignore[union-attr]


def test_last_answers_changed__stamps_go_after_the_commit__to_the_outbox_when_the_cache_is_down(
    reviewer: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    last_answer(reviewer="rita", now=now)
    last_answer(reviewer="odd responder id", now=now)
    stamps = [last_answer_stamp_key("rita"), last_answer_stamp_key("odd responder id")]
    assert all(cache.get(key) for key in stamps)
    with django_capture_on_commit_callbacks() as callbacks:
        last_answers_changed(["rita", "odd responder id", None, ""])
    assert len(callbacks) == 1
    assert not any(cache.get(key) for key in stamps)  # inside a transaction also at once, for its own reads

    def unreachable(key: str) -> None:
        raise CacheUnavailable("down")

    monkeypatch.setattr("loopsite.cache.cache_delete_strict", unreachable)
    with django_capture_on_commit_callbacks(execute=True):
        last_answers_changed(["rita"])
    queued = OutboxMessage.objects.filter(handler="cache.delete")
    assert [m.kwargs for m in queued] == [{"key": last_answer_stamp_key("rita")}]


@pytest.mark.django_db(transaction=True)
def test_undo_link__committed_answers__kept_copy_replaced_after_each(reviewer: Any, pending: list[str]) -> None:
    """Outside a test transaction, as in production: the stamps are deleted when the answer commits."""
    client = signed_in(reviewer)
    assert undo_link(client) is None
    answer(client, pending[0], "dismiss")
    assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: dismiss)"
    answer(client, pending[0], "approve", amends="1")
    with CaptureQueriesContext(connection) as captured:
        assert undo_link(client) == f"triage:{pending[0]} ({pending[0]}: approve)"
    assert probes(captured) == 0  # the POST's own page read it again after the commit and kept it
