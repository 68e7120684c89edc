"""The review queue in real Chromium: keys, clicks, claims. Every test checks the stored rows, not only the page."""

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, expect

from auditlog.models import Decision, ResponseRevision
from auditlog.services import decision_log
from tests.conftest import ServerRequests
from tests.factories import entry, make_agent
from tests.web.conftest import log_pending, stored

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
# The machine running the suite may be busy; give the page time rather than fail on a slow swap.
expect.set_options(timeout=15_000)


@pytest.fixture
def open_page(chromium: Browser, live_server: Any) -> Iterator[Any]:
    contexts: list[BrowserContext] = []
    errors: list[str] = []
    in_flight: set[Any] = set()
    server = ServerRequests()
    request_started.connect(server.started)
    request_finished.connect(server.finished)

    def settle(timeout: float = 10.0) -> None:
        """Wait until the server has answered every request the pages made (claims, the header, beacons)."""
        deadline = time.monotonic() + timeout
        while in_flight and time.monotonic() < deadline:
            for context in contexts:
                for page in context.pages:
                    page.wait_for_timeout(20)

    def make(username: str) -> Page:
        context = chromium.new_context(base_url=live_server.url)
        context.set_default_timeout(10_000)
        context.on("request", lambda request: in_flight.add(request))
        context.on("requestfinished", lambda request: in_flight.discard(request))
        context.on("requestfailed", lambda request: in_flight.discard(request))
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/queue/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/queue/")
        return page

    yield make
    # The live server shares the test database: let it finish every request (leaving the page sends a beacon
    # that gives the claim back) before the database is emptied for the next test.
    settle()
    for context in contexts:
        for page in context.pages:
            page.goto("about:blank")
    settle()
    for context in contexts:
        context.close()
    # The browser's side is done; the server's may not be (the shared in-memory SQLite refuses to empty a table
    # that a request still reads: "database table is locked").
    assert server.seen > 0, "the live server's requests were not counted: the wait below would wait for nothing"
    server.wait_idle()
    request_started.disconnect(server.started)
    request_finished.disconnect(server.finished)
    assert errors == [], f"script errors on the page: {errors}"


def item(page: Page, entry_id: str) -> Any:
    return page.locator(f'#queue-list > .item[data-entry-id="{entry_id}"]')


def wait_focused(page: Page, entry_id: str) -> None:
    expect(page.locator("#queue-list > .item.focused")).to_have_attribute("data-entry-id", entry_id)


def answered(entry_id: str, timeout: float = 10.0) -> Decision:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = stored(entry_id)
        if d.response_action is not None:
            return d
        time.sleep(0.05)
    raise AssertionError(f"{entry_id} has no response after {timeout}s")


def claimed_by(entry_id: str, who: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored(entry_id).claimed_by == who:
            return
        time.sleep(0.05)
    raise AssertionError(f"{entry_id} is not claimed by {who}")


def respond_and_wait(page: Page, key: str, entry_id: str, next_id: str | None) -> None:
    page.keyboard.press(key)
    try:
        expect(item(page, entry_id)).to_have_count(0)
    except AssertionError as exc:
        notices = page.locator(".notices").all_inner_texts()
        d = stored(entry_id)
        raise AssertionError(
            f"{entry_id} still listed after {key!r}; notices: {notices}; "
            f"stored response {d.response_action!r}, claimed by {d.claimed_by!r}"
        ) from exc
    if next_id is not None:
        wait_focused(page, next_id)


def assert_web_response(d: Decision, action: str, responder: str = "rita") -> None:
    assert (d.response_action, d.responder_id, d.response_source) == (action, responder, "web")
    assert d.responded_at is not None and d.time_to_respond is not None
    assert d.time_to_respond == pytest.approx((d.responded_at - d.timestamp).total_seconds())
    assert d.time_to_respond >= 3600  # logged an hour before


def test_browser__sign_in_and_respond_with_each_key__rows_stored(open_page: Any, reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 5)
    page = open_page("rita")
    wait_focused(page, ids[0])
    claimed_by(ids[0], "rita")
    expect(page.locator('[data-stat="pending"]')).to_have_text("5")

    respond_and_wait(page, "a", ids[0], ids[1])
    respond_and_wait(page, "d", ids[1], ids[2])
    respond_and_wait(page, "e", ids[2], ids[3])
    # m opens the picker of the agent's other actions; 1 picks the first (auto-resolve)
    page.keyboard.press("m")
    picker = item(page, ids[3]).locator(".picker")
    expect(picker).to_be_visible()
    expect(picker.locator("button")).to_have_text(["auto-resolve 1", "escalate 2"])
    respond_and_wait(page, "1", ids[3], ids[4])

    assert_web_response(answered(ids[0]), "approve")
    assert_web_response(answered(ids[1]), "dismiss")
    assert_web_response(answered(ids[2]), "escalate")
    modified = answered(ids[3])
    assert_web_response(modified, "modify")
    assert modified.modified_action == "auto-resolve"
    expect(page.locator('[data-stat="pending"]')).to_have_text("1")
    expect(page.locator('[data-stat="today"]')).to_have_text("4")
    assert stored(ids[4]).response_action is None


def test_browser__modify_by_clicking_the_action_picker__stored(open_page: Any, reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 2)
    page = open_page("rita")
    wait_focused(page, ids[0])
    first = item(page, ids[0])
    first.get_by_role("button", name="Modify…").click()
    first.get_by_role("button", name="escalate 2").click()
    expect(first).to_have_count(0)
    d = answered(ids[0])
    assert_web_response(d, "modify")
    assert d.modified_action == "escalate"


def test_browser__note_typed_then_key__note_stored_and_keys_inert_while_typing(
    open_page: Any, reviewer: Any, agent: Any
) -> None:
    ids = log_pending(agent.agent_id, 2)
    page = open_page("rita")
    wait_focused(page, ids[0])
    page.keyboard.press("n")
    note = item(page, ids[0]).locator("textarea[name=note]")
    expect(note).to_be_focused()
    # "a", "d", "e", "j" typed into the note must not respond or move
    page.keyboard.type("a dead end, judge")
    page.keyboard.press("Escape")
    assert stored(ids[0]).response_action is None
    wait_focused(page, ids[0])
    respond_and_wait(page, "d", ids[0], ids[1])
    d = answered(ids[0])
    assert_web_response(d, "dismiss")
    assert d.response_note == "a dead end, judge"


def test_browser__bulk_select_with_x__all_answered_at_once(open_page: Any, reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 4)
    page = open_page("rita")
    wait_focused(page, ids[0])
    page.keyboard.press("x")
    page.keyboard.press("j")
    wait_focused(page, ids[1])
    page.keyboard.press("j")
    wait_focused(page, ids[2])
    page.keyboard.press("x")
    expect(page.locator("[data-selected-count]")).to_have_text("2")
    page.keyboard.press("d")
    expect(item(page, ids[0])).to_have_count(0)
    expect(item(page, ids[2])).to_have_count(0)
    wait_focused(page, ids[3])
    assert_web_response(answered(ids[0]), "dismiss")
    assert_web_response(answered(ids[2]), "dismiss")
    assert stored(ids[1]).response_action is None


def test_browser__bulk_with_mouse__checkboxes_and_button(open_page: Any, reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 3)
    page = open_page("rita")
    wait_focused(page, ids[0])
    item(page, ids[1]).locator("input.select").check()
    item(page, ids[2]).locator("input.select").check()
    page.get_by_role("button", name="Approve selected").click()
    expect(page.locator("#queue-list > .item")).to_have_count(1)
    assert [answered(i).response_action for i in ids[1:]] == ["approve", "approve"]
    assert stored(ids[0]).response_action is None


def test_browser__binary_mode__thumbs_stored_as_approve_and_dismiss__down_on_a_sampled_miss_is_escalate(
    open_page: Any, reviewer: Any
) -> None:
    make_agent("thumbs", binary_mode=True, review_sample_rate=1.0)
    ids = log_pending("thumbs", 3)
    (sampled,) = log_pending("thumbs", 1, decision={"action": "auto-resolve"})
    page = open_page("rita")
    wait_focused(page, ids[0])
    first = item(page, ids[0])
    expect(first.get_by_role("button", name="Thumbs up a")).to_be_visible()
    expect(first.locator("button", has_text="Escalate")).to_have_count(0)
    page.keyboard.press("e")  # no escalate in binary mode: nothing happens
    page.keyboard.press("m")
    assert stored(ids[0]).response_action is None
    respond_and_wait(page, "a", ids[0], ids[1])
    item(page, ids[1]).get_by_role("button", name="Thumbs down d").click()
    expect(item(page, ids[1])).to_have_count(0)
    assert_web_response(answered(ids[0]), "approve")
    assert_web_response(answered(ids[1]), "dismiss")
    expect(page.locator(".notices")).to_contain_text("thumbs down: should not have fired → dismiss")
    # The agent did nothing and the reviewer says it should have acted: a missed signal, not a correct non-fire.
    item(page, sampled).click()
    wait_focused(page, sampled)
    respond_and_wait(page, "d", sampled, None)
    assert_web_response(answered(sampled), "escalate")
    expect(page.locator(".notices")).to_contain_text("thumbs down: should have acted → escalate")


def test_browser__undo_key__last_answer_comes_back_and_is_amended_history_kept(
    open_page: Any, reviewer: Any, agent: Any
) -> None:
    ids = log_pending(agent.agent_id, 2)
    page = open_page("rita")
    wait_focused(page, ids[0])
    respond_and_wait(page, "d", ids[0], ids[1])
    assert answered(ids[0]).response_action == "dismiss"

    page.keyboard.press("z")
    back = item(page, ids[0])
    expect(back).to_have_class(re.compile("amending"))
    expect(back).to_contain_text("You answered dismiss")
    wait_focused(page, ids[0])
    page.keyboard.press("a")
    expect(page.locator(".notices")).to_contain_text(f"{ids[0]}: changed to approve")
    expect(item(page, ids[0])).to_have_count(0)
    assert_web_response(stored(ids[0]), "approve")
    history = list(ResponseRevision.objects.filter(entry_id=ids[0]).values_list("number", "action", "responder_id"))
    assert history == [(1, "dismiss", "rita"), (2, "approve", "rita")]
    assert stored(ids[1]).response_action is None
    page.keyboard.press("?")
    expect(page.locator("#help")).to_contain_text("change your last answer")


def test_browser__two_reviewers_same_item__claim_keeps_them_apart_and_second_response_refused(
    open_page: Any, reviewer: Any, approver: Any, agent: Any
) -> None:
    ids = log_pending(agent.agent_id, 4)
    rita = open_page("rita")
    wait_focused(rita, ids[0])
    claimed_by(ids[0], "rita")

    # Alice does not get the item Rita holds.
    alice = open_page("alice")
    wait_focused(alice, ids[1])
    expect(item(alice, ids[0])).to_have_count(0)
    claimed_by(ids[1], "alice")

    # Rita walks away for longer than the claim; Alice's page now offers it and she answers first.
    Decision.objects.filter(entry_id=ids[0]).update(claimed_until=timezone.now() - timedelta(seconds=1))
    alice.reload()
    wait_focused(alice, ids[0])
    respond_and_wait(alice, "a", ids[0], None)

    # Rita comes back and answers the same item: refused with a clear message, and she moves on.
    rita.keyboard.press("d")
    expect(rita.locator(".notice.already_responded")).to_contain_text("alice already answered")
    expect(item(rita, ids[0])).to_have_count(0)
    expect(rita.locator("#queue-list > .item.focused")).to_have_count(1)
    d = stored(ids[0])
    assert (d.response_action, d.responder_id) == ("approve", "alice")


def test_browser__twenty_items_cleared_by_keyboard_alone__every_response_logged(
    open_page: Any, reviewer: Any, agent: Any
) -> None:
    ids = log_pending(agent.agent_id, 20)
    page = open_page("rita")
    wait_focused(page, ids[0])
    keys = "adea" * 5
    for index, (key, entry_id) in enumerate(zip(keys, ids, strict=True)):
        respond_and_wait(page, key, entry_id, ids[index + 1] if index + 1 < len(ids) else None)
    expect(page.locator(".empty")).to_contain_text("All clear")
    expected = {"a": "approve", "d": "dismiss", "e": "escalate"}
    for key, entry_id in zip(keys, ids, strict=True):
        assert_web_response(answered(entry_id), expected[key])
    assert Decision.objects.filter(queued=True, response_action=None).count() == 0


def test_browser__typing_in_a_filter_field__keys_do_nothing(open_page: Any, reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 2)
    page = open_page("rita")
    wait_focused(page, ids[0])
    page.get_by_label("Matched rule").click()
    page.keyboard.type("adem jkx")
    page.get_by_label("Agent").focus()
    page.keyboard.press("a")
    expect(page.get_by_label("Matched rule")).to_have_value("adem jkx")
    wait_focused(page, ids[0])
    assert [stored(i).response_action for i in ids] == [None, None]
    page.keyboard.press("Escape")  # leaves the field; now the keys work again
    respond_and_wait(page, "a", ids[0], ids[1])
    assert_web_response(answered(ids[0]), "approve")


def test_browser__one_id_two_agents__each_item_claimed_and_answered_on_its_own(
    open_page: Any, reviewer: Any, agent: Any
) -> None:
    make_agent("fraud")
    now = timezone.now()
    for agent_id, hours in (("triage", 2), ("fraud", 1)):  # triage's first, oldest first
        decision_log(raw=entry(agent_id, id="twin", timestamp=(now - timedelta(hours=hours)).isoformat()), now=now)

    def twin(agent_id: str) -> Decision:
        return Decision.objects.get(entry_id="twin", agent__agent_id=agent_id)

    def keyed(page: Page, agent_id: str) -> Any:
        return page.locator(f'#queue-list > .item[data-key="{agent_id}:twin"]')

    page = open_page("rita")
    expect(keyed(page, "triage")).to_have_class(re.compile(r"\bfocused\b"))
    expect(keyed(page, "triage")).to_have_class(re.compile(r"\bclaimed\b"))
    assert (twin("triage").claimed_by, twin("fraud").claimed_by) == ("rita", None)

    page.keyboard.press("d")
    expect(keyed(page, "triage")).to_have_count(0)
    expect(keyed(page, "fraud")).to_have_class(re.compile(r"\bfocused\b"))
    expect(keyed(page, "fraud")).to_have_class(re.compile(r"\bclaimed\b"))
    page.keyboard.press("a")
    expect(page.locator("#queue-list > .item")).to_have_count(0)

    assert_web_response(twin("triage"), "dismiss")
    assert_web_response(twin("fraud"), "approve")


# --- issue 13: order, dates, the picker, the response rate -------------------------------------------------


def listed(page: Page) -> Any:
    return page.locator("#queue-list > .item")


def test_browser__newest_first__chosen_once_and_remembered_across_a_reload(
    open_page: Any, reviewer: Any, agent: Any
) -> None:
    ids = log_pending(agent.agent_id, 3)
    page = open_page("rita")
    wait_focused(page, ids[0])  # oldest first until the reviewer says otherwise
    page.get_by_label("Order").select_option("newest")
    page.get_by_role("button", name="Filter").click()
    expect(listed(page).first).to_have_attribute("data-entry-id", ids[2])
    wait_focused(page, ids[2])
    page.reload()
    expect(listed(page).first).to_have_attribute("data-entry-id", ids[2])
    page.goto("/queue/")  # no ?sort=: the session remembers it
    expect(listed(page)).to_have_count(3)
    assert [listed(page).nth(i).get_attribute("data-entry-id") for i in range(3)] == ids[::-1]
    expect(page.get_by_label("Order")).to_have_value("newest")
    # answering keeps the order: the next one down is the next older
    wait_focused(page, ids[2])
    respond_and_wait(page, "a", ids[2], ids[1])


def test_browser__date_filter__narrows_the_list_and_the_pending_counter(
    open_page: Any, reviewer: Any, agent: Any
) -> None:
    old = log_pending(agent.agent_id, 2, ago=timedelta(days=10))
    recent = log_pending(agent.agent_id, 2, ago=timedelta(minutes=30))
    page = open_page("rita")
    expect(listed(page)).to_have_count(4)
    expect(page.locator('[data-stat="pending"]')).to_have_text("4")
    since = (timezone.now() - timedelta(days=3)).date().isoformat()
    page.get_by_label("Logged from").fill(since)
    page.get_by_role("button", name="Filter").click()
    expect(listed(page)).to_have_count(2)
    assert sorted(listed(page).nth(i).get_attribute("data-entry-id") or "" for i in range(2)) == sorted(recent)
    expect(page.locator('[data-stat="pending"]')).to_have_text("2")
    expect(page.locator(".stats")).to_contain_text("pending review with these filters")
    # and the other way round: up to four days ago, only the old ones
    page.goto(f"/queue/?to={(timezone.now() - timedelta(days=4)).date().isoformat()}")
    expect(listed(page)).to_have_count(2)
    expect(page.locator('[data-stat="pending"]')).to_have_text("2")
    assert sorted(listed(page).nth(i).get_attribute("data-entry-id") or "" for i in range(2)) == sorted(old)


def test_browser__action_picker__hidden_and_its_keys_dead_until_m(open_page: Any, reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 2)
    page = open_page("rita")
    wait_focused(page, ids[0])
    picker = item(page, ids[0]).locator(".picker")
    expect(picker).to_be_hidden()
    expect(item(page, ids[0]).get_by_role("button", name="escalate 2")).to_be_hidden()
    page.keyboard.press("2")
    page.wait_for_timeout(300)
    expect(item(page, ids[0])).to_have_count(1)
    assert stored(ids[0]).response_action is None
    page.keyboard.press("m")
    expect(picker).to_be_visible()
    page.keyboard.press("m")  # m again closes it, and its keys are dead again
    expect(picker).to_be_hidden()
    page.keyboard.press("2")
    page.wait_for_timeout(300)
    assert stored(ids[0]).response_action is None
    page.keyboard.press("m")
    respond_and_wait(page, "2", ids[0], ids[1])
    d = answered(ids[0])
    assert (d.response_action, d.modified_action) == ("modify", "escalate")


def test_browser__response_rate__moves_as_backlog_answers_land(open_page: Any, reviewer: Any, agent: Any) -> None:
    # The backlog of an earlier week: answering it is evidence for the next tuner run, so the figure moves.
    ids = log_pending(agent.agent_id, 4, ago=timedelta(days=9))
    page = open_page("rita")
    rate = page.locator('[data-stat="week-rate"]')
    expect(rate).to_have_text("0 %")
    wait_focused(page, ids[0])
    respond_and_wait(page, "a", ids[0], ids[1])
    expect(rate).to_have_text("25 %")
    expect(page.locator('[data-stat="week-counts"]')).to_have_text("1 of 4")
    respond_and_wait(page, "d", ids[1], ids[2])
    expect(rate).to_have_text("50 %")
    page.reload()  # the header's own request agrees with what the answers showed
    expect(rate).to_have_text("50 %")
    expect(page.locator(".warning")).to_contain_text("below 60 %")
    respond_and_wait(page, "a", ids[2], ids[3])
    expect(rate).to_have_text("75 %")
    expect(page.locator(".warning")).to_have_count(0)
