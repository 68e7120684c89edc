"""The reviewer queue page: a list of pending decisions, responding by key or click, claims, bulk responses.

Views only read the request, call a selector or a service, and render. Responding re-renders ``#queue-body``
(header, notices, list, pager) through htmx, so the next item comes up without a page load.
"""

from collections.abc import Callable
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
    )


def _reviewer(request: HttpRequest) -> str:
    return str(request.user.get_username())


def _body_context(
    request: HttpRequest, data: Any, notices: list[RespondResult] | None = None, *, with_stats: bool = True
) -> dict[str, Any]:
    now = timezone.now()
    reviewer = _reviewer(request)
    filters = _filters(data)
    page = queue_page(filters=filters, reviewer=reviewer, now=now, cursor=Cursor.decode(data.get("after")))
    amending = amend_item(entry_id=str(data.get("amend") or ""), reviewer=reviewer, now=now)
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
        "stats": queue_stats(reviewer=reviewer, now=now) if with_stats else None,
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
    """The queue, oldest first; ``?after=`` is the keyset cursor of the page before."""
    context = _body_context(request, request.GET, with_stats=False)
    template = "queue/_body.html" if getattr(request, "htmx", False) else "queue/queue.html"
    return render(request, template, context)


@require_GET
@reviewer_required
def queue_stats_view(request: HttpRequest) -> HttpResponse:
    """The header figures: pending, done by me today, this ISO week's response rate (warning below 60 %)."""
    stats = queue_stats(reviewer=_reviewer(request), now=timezone.now())
    return render(request, "queue/_stats.html", {"stats": stats})


@require_POST
@reviewer_required
def queue_respond(request: HttpRequest) -> HttpResponse:
    """One or several responses (``entry_id`` repeated); answers with the re-rendered queue body."""
    entry_ids = [e for e in dict.fromkeys(request.POST.getlist("entry_id")) if e][:MAX_BULK]
    modify_to = (request.POST.get("modify_to") or "").strip()
    thumb = (request.POST.get("thumb") or "").strip()
    action = "modify" if modify_to else (request.POST.get("response") or "").strip()
    amends = request.POST.get("amends") == "1"
    now = timezone.now()
    notices: list[RespondResult] = []
    # In binary mode a thumb means approve, dismiss or escalate depending on what the agent did.
    meanings = thumb_meanings(entry_ids, thumb) if thumb else {}
    if not entry_ids:
        notices.append(RespondResult("", "invalid", "Nothing selected."))
    elif thumb and not meanings:
        notices.append(RespondResult("", "invalid", f"Unknown thumb {thumb!r}."))
    elif not thumb and action not in RESPONSE_ACTIONS:
        notices.append(RespondResult("", "invalid", f"Unknown response {action!r}."))
    else:
        for entry_id in entry_ids:
            chosen, meaning = meanings.get(entry_id, (action, ""))
            record = amended_response_record if amends else claimed_response_record
            result = record(
                entry_id=entry_id,
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
    """Claim the focused item (and release the one left, if given). JSON for the page's script."""
    reviewer = _reviewer(request)
    released = (request.POST.get("release") or "").strip()
    entry_id = (request.POST.get("entry_id") or "").strip()
    if released and released != entry_id:
        claim_release(entry_id=released, reviewer=reviewer)
    if not entry_id:
        return JsonResponse({"won": False, "released": bool(released), "message": ""})
    result = claim_acquire(entry_id=entry_id, reviewer=reviewer, now=timezone.now())
    if result.won:
        message = ""
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
