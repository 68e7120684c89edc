"""The reviewer queue page: a list of pending decisions, responding by key or click, claims, bulk responses.

Views only read the request, call a selector or a service, and render. Responding re-renders ``#queue-body``
(header, notices, list, pager) through htmx, so the next item comes up without a page load.

Ids are unique per agent, so every form and request of the page names the agent of each item: a one-item form
sends ``entry_id`` with ``entry_agent`` (``agent`` is the page's filter), the bulk checkboxes send ``item`` as
``agentId:entryId`` (an agentId is a slug, without ``:``), a claim ``entry_agent`` and ``release_agent``, and
the undo link ``amend_agent``. An id sent without its agent is taken while only one agent uses it.
"""

from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from auditlog.claims import (
    ItemRef,
    RespondResult,
    amended_response_record,
    claim_acquire,
    claim_release,
    claimed_response_record,
    thumb_meanings,
)
from auditlog.entry import RESPONSE_ACTIONS
from auditlog.selectors import (
    Cursor,
    QueueFilters,
    amend_item,
    last_answer,
    queue_page,
    queue_stats,
    week_rate_note_responses,
)
from loopsite.rules import rule
from people.roles import is_reviewer

MAX_BULK = 100

View = Callable[..., HttpResponse]


def reviewer_required(view: View) -> View:
    """Anonymous visitors go to sign in; signed-in users without a reviewing role get 403."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_reviewer(request.user):
            raise PermissionDenied("Only reviewers, approvers and admins respond to decisions.")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _float(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat((raw or "").strip())
    except ValueError:
        return None


def _filters(data: Any) -> QueueFilters:
    def text(name: str) -> str | None:
        value = (data.get(name) or "").strip()
        return value or None

    return QueueFilters(
        agent_id=text("agent"),
        action=text("action"),
        confidence_min=_float(data.get("min")),
        confidence_max=_float(data.get("max")),
        rule=text("rule"),
        date_from=_date(data.get("from")),
        date_to=_date(data.get("to")),
    )


SORT_SESSION_KEY = "queue_sort"
SORTS = ("oldest", "newest")


def _newest_first(request: HttpRequest) -> bool:
    """The reviewer's order, kept on their session: ``?sort=newest`` or ``oldest`` changes it, and it stays for
    the following pages, answers and visits until they sign out."""
    chosen = (request.GET.get("sort") or "").strip()
    if chosen in SORTS:
        request.session[SORT_SESSION_KEY] = chosen
    return request.session.get(SORT_SESSION_KEY) == "newest"


def _reviewer(request: HttpRequest) -> str:
    return str(request.user.get_username())


def _agent_named(data: Any, name: str) -> str | None:
    return (data.get(name) or "").strip() or None


def _posted_items(data: Any) -> list[ItemRef]:
    """The decisions a response names, each once, at most ``MAX_BULK``: ``entry_id`` values (of the agent in
    ``entry_agent``, when given) and ``item`` values ``agentId:entryId``."""
    agent_id = _agent_named(data, "entry_agent")
    refs: list[ItemRef] = [(entry_id, agent_id) for entry_id in data.getlist("entry_id") if entry_id]
    for value in data.getlist("item"):
        item_agent, _, entry_id = str(value).partition(":")
        if item_agent and entry_id:
            refs.append((entry_id, item_agent))
    return list(dict.fromkeys(refs))[:MAX_BULK]


def _body_context(
    request: HttpRequest, data: Any, notices: list[RespondResult] | None = None, *, with_stats: bool = True
) -> dict[str, Any]:
    now = timezone.now()
    reviewer = _reviewer(request)
    filters = _filters(data)
    page = queue_page(
        filters=filters,
        reviewer=reviewer,
        now=now,
        cursor=Cursor.decode(data.get("after")),
        newest_first=_newest_first(request),
    )
    amending = amend_item(
        entry_id=str(data.get("amend") or ""), agent_id=_agent_named(data, "amend_agent"), reviewer=reviewer, now=now
    )
    if amending is not None:
        page.items.insert(0, amending)
    undo = None if amending is not None else last_answer(reviewer=reviewer, now=now)
    filter_qs = urlencode(filters.as_query())
    next_url = ""
    if page.next_cursor is not None:
        next_url = reverse("queue") + "?" + urlencode({**filters.as_query(), "after": page.next_cursor.encode()})
    return {
        "filter_qs": filter_qs,
        "next_url": next_url,
        "page": page,
        # The full page leaves the header figures to their own request (``queue-stats``), so a cold count never
        # holds up the list; after a response they come inline, the counts being warm by then.
        "stats": queue_stats(reviewer=reviewer, now=now, filters=filters) if with_stats else None,
        "notices": notices or [],
        "filter_query": filters.as_query(),
        "undo": undo,
        "response_actions": RESPONSE_ACTIONS,
        "claim_minutes": rule("CLAIM_MINUTES"),
        "amend_hours": rule("AMEND_WINDOW_HOURS"),
    }


@require_GET
@reviewer_required
def queue_view(request: HttpRequest) -> HttpResponse:
    """The queue, oldest first or newest first (``?sort=``, remembered); ``?after=`` is the keyset cursor of the
    page before."""
    context = _body_context(request, request.GET, with_stats=False)
    template = "queue/_body.html" if getattr(request, "htmx", False) else "queue/queue.html"
    return render(request, template, context)


@require_GET
@reviewer_required
def queue_stats_view(request: HttpRequest) -> HttpResponse:
    """The header figures: pending (under the page's filters), done by me today, the response rate of the tuner's
    window (warning below 60 %)."""
    stats = queue_stats(reviewer=_reviewer(request), now=timezone.now(), filters=_filters(request.GET))
    return render(request, "queue/_stats.html", {"stats": stats})


@require_POST
@reviewer_required
def queue_respond(request: HttpRequest) -> HttpResponse:
    """One or several responses (``entry_id`` or ``item`` repeated); answers with the re-rendered queue body."""
    refs = _posted_items(request.POST)
    modify_to = (request.POST.get("modify_to") or "").strip()
    thumb = (request.POST.get("thumb") or "").strip()
    action = "modify" if modify_to else (request.POST.get("response") or "").strip()
    amends = request.POST.get("amends") == "1"
    now = timezone.now()
    notices: list[RespondResult] = []
    # In binary mode a thumb means approve, dismiss or escalate depending on what the agent did.
    meanings = thumb_meanings(refs, thumb) if thumb else {}
    if not refs:
        notices.append(RespondResult("", "invalid", "Nothing selected."))
    elif thumb and not meanings:
        notices.append(RespondResult("", "invalid", f"Unknown thumb {thumb!r}."))
    elif not thumb and action not in RESPONSE_ACTIONS:
        notices.append(RespondResult("", "invalid", f"Unknown response {action!r}."))
    else:
        for entry_id, agent_id in refs:
            chosen, meaning = meanings.get((entry_id, agent_id), (action, ""))
            record = amended_response_record if amends else claimed_response_record
            result = record(
                entry_id=entry_id,
                agent_id=agent_id,
                reviewer=_reviewer(request),
                action=chosen,
                modified_action=modify_to or None,
                note=request.POST.get("note"),
                now=now,
                actor=request.user,
            )
            if meaning and result.outcome == "recorded":
                result = RespondResult(entry_id, "recorded", f"{entry_id}: {meaning}", result.decision)
            notices.append(result)
        recorded = [n.decision for n in notices if n.outcome == "recorded" and n.decision is not None]
        week_rate_note_responses(decisions=recorded, now=now)
    if not getattr(request, "htmx", False):
        # Without JavaScript the forms post normally: say what happened on the next page (post/redirect/get).
        for n in notices:
            level = messages.SUCCESS if n.outcome == "recorded" else messages.WARNING
            messages.add_message(request, level, n.message)
        query = _filters(request.POST).as_query()
        if request.POST.get("after"):
            query["after"] = str(request.POST["after"])
        return redirect(reverse("queue") + ("?" + urlencode(query) if query else ""))
    return render(request, "queue/_body.html", _body_context(request, request.POST, notices))


@require_POST
@reviewer_required
def queue_claim(request: HttpRequest) -> JsonResponse:
    """Claim the focused item (and release the one left, if given), each named by ``entry_id``/``release`` and
    its agent ``entry_agent``/``release_agent``. JSON for the page's script."""
    reviewer = _reviewer(request)
    released = (request.POST.get("release") or "").strip()
    released_agent = _agent_named(request.POST, "release_agent")
    entry_id = (request.POST.get("entry_id") or "").strip()
    agent_id = _agent_named(request.POST, "entry_agent")
    if released and (released, released_agent) != (entry_id, agent_id):
        claim_release(entry_id=released, agent_id=released_agent, reviewer=reviewer)
    if not entry_id:
        return JsonResponse({"won": False, "released": bool(released), "message": ""})
    result = claim_acquire(entry_id=entry_id, agent_id=agent_id, reviewer=reviewer, now=timezone.now())
    if result.won:
        message = ""
    elif result.problem is not None:
        message = result.problem
    elif result.missing:
        message = f"{entry_id} is no longer in the queue."
    elif result.responded_by is not None:
        message = f"{result.responded_by} already answered {entry_id}; moving on."
    else:
        message = f"{result.holder} is reviewing {entry_id}; moving on."
    return JsonResponse(
        {
            "won": result.won,
            "until": result.until.isoformat() if result.until else None,
            "holder": result.holder,
            "respondedBy": result.responded_by,
            "message": message,
        }
    )
