"""The reviewer queue page: a list of pending decisions, responding by key or click, claims, bulk responses.

Views only read the request, call a selector or a service, and render. Responding re-renders ``#queue-body``
(header, notices, list, pager) through htmx, so the next item comes up without a page load.

Ids are unique per agent, so every form and request of the page names the agent of each item: a one-item form
sends ``entry_id`` with ``entry_agent`` (``agent`` is the page's filter), the bulk checkboxes send ``item`` as
``agentId:entryId`` (an agentId is a slug, without ``:``), a claim ``entry_agent`` and ``release_agent``, and
the undo link ``amend_agent``. An id sent without its agent is taken while only one agent uses it.
"""

import html
from collections.abc import Callable
from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.defaultfilters import floatformat
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import avoid_wrapping
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import MONTHS_DAYS, TIME_CHUNKS, TIME_STRINGS, TIME_STRINGS_KEYS
from django.utils.timezone import is_aware
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
    QueueItem,
    amend_item,
    last_answer,
    queue_cache_keys,
    queue_page,
    queue_stats,
    week_rate_note_responses,
)
from loopsite.kept import keep
from loopsite.links import url_for
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


# --- One queue item as HTML -----------------------------------------------------------------------------------
#
# The items are written here rather than by a template include: 25 includes, each resolving some 60 variables
# and filters (floatformat, timesince), cost three quarters of the page's time. The markup is the same, byte for
# byte, as the template it replaced (kept as tests/web/reference/queue_item.html; a test compares the two), with
# the same escaping: every value goes through ``_e``.

_e = html.escape  # what the templates' autoescape does: & < > " ' escaped
_AMENDING = ' data-amending="1"'
_BINARY_TAG = '<span class="tag binary-tag">binary</span>'
_NO_RULES = '<span class="muted">no matched rules</span>'
_HALF_UP_PLACES = {places: Decimal(1).scaleb(-places) for places in (2, 3)}


def _fixed(value: object, places: int) -> str:
    """``value|floatformat:places`` for finite numbers (rounded half up on the decimal repr, no "-0.00"),
    without its general machinery; anything else goes to the filter itself."""
    if isinstance(value, float | int) and not isinstance(value, bool) and abs(value) < 1e15 and value == value:
        rounded = Decimal(str(value)).quantize(_HALF_UP_PLACES[places], ROUND_HALF_UP)
        return f"{rounded if rounded else rounded.copy_abs():f}"
    return str(floatformat(value, places))


def _ratio(value: object) -> str:
    """``{% widthratio value 1 100 %}``."""
    try:
        return str(round(float(value) / 1.0 * 100))  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        return ""


@lru_cache(maxsize=4096)
def _age_words(years: int, months: int, minutes: int, language: str | None) -> str:
    """The tail of Django's ``timesince`` (depth 2) for an age already split into years, months and the whole
    minutes after them: the words only depend on these, so they are kept."""
    partials = [years, months]
    remaining = minutes * 60
    for chunk in TIME_CHUNKS:
        count = remaining // chunk
        partials.append(count)
        remaining -= chunk * count
    first = next((i for i, value in enumerate(partials) if value), None)
    if first is None:
        return avoid_wrapping(TIME_STRINGS["minute"] % {"num": 0})
    words = []
    for i in range(first, min(first + 2, len(TIME_STRINGS_KEYS))):
        if not partials[i]:
            break
        words.append(avoid_wrapping(TIME_STRINGS[TIME_STRINGS_KEYS[i]] % {"num": partials[i]}))
    return translation.gettext(", ").join(words)


def _since(d: datetime, now: datetime, language: str | None) -> str:
    """``d|timesince`` at ``now``, as Django's ``timesince`` computes it (years and months by the calendar, from
    ``d`` in its own time zone), with the words kept per (years, months, minutes) in ``language`` (the active
    one, read once per page)."""
    if is_aware(now) and is_aware(d):
        now = now.astimezone(d.tzinfo)
    delta = now - d
    if delta.days * 24 * 60 * 60 + delta.seconds <= 0:
        return _age_words(0, 0, 0, language)
    total_months = (now.year - d.year) * 12 + (now.month - d.month)
    if d.day > now.day or (d.day == now.day and d.time() > now.time()):
        total_months -= 1
    years, months = divmod(total_months, 12)
    pivot = d
    if years or months:
        year, month = d.year + years, d.month + months
        if month > 12:
            month -= 12
            year += 1
        pivot = datetime(year, month, min(MONTHS_DAYS[month - 1], d.day), d.hour, d.minute, d.second, tzinfo=d.tzinfo)
    minutes = int((now - pivot).total_seconds() // 60)
    return _age_words(years, months, minutes, language)


def _features(features: list[Any]) -> str:
    return "".join(
        f'<tr><th scope="row">{_e(str(f.name))}</th><td class="num">{_fixed(f.value, 3)}</td></tr>' for f in features
    )


_UNSET: Any = object()


def item_html(
    item: QueueItem,
    *,
    respond_url: str,
    csrf_input: str,
    now: datetime,
    tz: tzinfo | None = None,
    language: str | None = _UNSET,
) -> SafeString:
    """One item of the queue (``<li>``), as the page and the htmx body show it. ``tz`` and ``language``: the
    active time zone and language, when the caller has read them already (``items_html`` does, once a page)."""
    if tz is None:
        tz = timezone.get_current_timezone()
    if language is _UNSET:
        language = translation.get_language()
    head, middle, tail = _item_parts_kept(item, respond_url=respond_url, tz=tz, language=language)
    age = _e(_since(item.decision.timestamp, now, language))
    return mark_safe(f"{head}{csrf_input}{middle}{age}{tail}")  # noqa: S308 -- every value is escaped by _e


# --- Items kept rendered, per process ---------------------------------------------------------------------------
#
# An item's markup is a function of its decision's columns (which never change once logged; its claim is not
# shown), its agent's id, actions and binary mode, the respond URL, the time zone and the language, except for two
# values: the page's CSRF input and the item's age. After every response the queue's body is drawn again with the
# same items but one, so each process keeps the markup around those two values, keyed by all that it depends on:
# the row as the database gave it (``QueueItem.fingerprint``) and the rest. At most ``ITEMS_KEPT`` items, forgotten
# all at once when full.

ITEMS_KEPT = 2048
_items_kept: dict[tuple[Any, ...], tuple[str, str, str]] = {}


def _item_parts_kept(item: QueueItem, *, respond_url: str, tz: tzinfo, language: str | None) -> tuple[str, str, str]:
    if item.fingerprint is None:  # shown again to change its answer: read as a model instance, not kept
        return _item_parts(item, respond_url=respond_url, tz=tz, language=language)
    key = (item.fingerprint, respond_url, tz, language)
    found = _items_kept.get(key)
    if found is None:
        found = _item_parts(item, respond_url=respond_url, tz=tz, language=language)
        keep(_items_kept, key, found, limit=ITEMS_KEPT)
    return found


_CSRF, _AGE = object(), object()  # where the two values that change from page to page go


def _item_parts(item: QueueItem, *, respond_url: str, tz: tzinfo, language: str | None) -> tuple[str, str, str]:
    """The item's markup before the CSRF input, between it and the age's words, and after them."""
    d = item.decision
    entry_id, agent_id = _e(str(item.entry_id)), _e(str(item.agent_id))
    url = _e(respond_url)
    out: list[Any] = [
        f'\n<li class="item{" binary" if item.binary_mode else ""}{" amending" if item.amending else ""}" '
        f'data-entry-id="{entry_id}" data-agent-id="{agent_id}" data-key="{_e(item.key)}"'
        f"{_AMENDING if item.amending else ''}>\n"
        f'  <form class="respond" method="post" action="{url}" hx-post="{url}" hx-target="#queue-body" '
        'hx-include="#queue-state">\n'
        "    ",
        _CSRF,
        f'<input type="hidden" name="entry_id" value="{entry_id}"><input type="hidden" '
        f'name="entry_agent" value="{agent_id}">\n    ',
    ]
    if item.amending:
        modified = f" → {_e(str(d.modified_action))}" if d.modified_action else ""
        out.append(
            '<input type="hidden" name="amends" value="1">\n'
            f'    <p class="amend-note" role="status">You answered <strong>{_e(str(d.response_action))}{modified}'
            "</strong>. Choose the right answer: it replaces that one, which stays in the decision's history."
            "</p>"
        )
    out.append(
        "\n"
        '    <div class="item-head">\n'
        f'      <input type="checkbox" class="select" name="item" value="{_e(item.key)}" form="bulk-form" '
        f'aria-label="Select {entry_id}">\n'
        f'      <span class="agent">{agent_id}</span>\n'
        f'      <span class="pill rank-{item.action_rank}">{_e(str(d.action))}</span>\n      '
    )
    threshold = f"{_fixed(d.threshold_used, 2)}"
    if d.confidence is None:
        fired = ", ".join(_e(str(r)) for r in d.matched_rules) or "no rule fired"
        out.append(
            "\n"
            '      <span class="conf" title="a rule-based decision without a confidence: the rules that fired">\n'
            f"        <strong>{fired}</strong>\n"
            f'        <span class="muted">{_e(str(d.threshold_name))} {threshold}</span>\n'
            "      </span>\n      "
        )
    else:
        out.append(
            "\n"
            '      <span class="conf" title="confidence against the threshold that gated it">\n'
            '        <svg class="confbar" viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" '
            'focusable="false"><rect class="track" y="2" width="100" height="4" rx="4" ry="2"/><rect class="fill" '
            f'y="2" width="{_ratio(d.confidence)}" height="4" rx="4" ry="2"/><rect class="mark" '
            f'x="{_ratio(d.threshold_used)}" width="2.5" height="8"/></svg>\n'
            f"        <strong>{_fixed(d.confidence, 2)}</strong>\n"
            f'        <span class="muted">{"≥" if item.above_threshold else "&lt;"} {threshold} '
            f"{_e(str(d.threshold_name))}</span>\n"
            "      </span>\n      "
        )
    out.append(f'\n      <span class="age muted" title="{timezone.localtime(d.timestamp, tz).isoformat()}">')
    out.append(_AGE)
    out.append(
        " ago</span>\n"
        f"      {_BINARY_TAG if item.binary_mode else ''}\n"
        "    </div>\n"
        '    <div class="details">\n'
        f'      <p class="reasoning">{_e(str(d.reasoning or "(no reasoning given)"))}</p>\n'
        '      <div class="evidence">\n        '
    )
    if item.features:
        out.append(
            "\n"
            '        <table class="features" aria-label="Features, largest first">\n'
            f"          {_features(item.features[:8])}\n"
            "        </table>\n        "
        )
        if len(item.features) > 8:
            out.append(
                "\n"
                f"        <details><summary>{len(item.features) - 8} more features</summary>\n"
                f'          <table class="features">{_features(item.features[8:])}</table>\n'
                "        </details>\n        "
            )
        out.append("\n        ")
    rules = "".join(f'<span class="tag">{_e(str(r))}</span>' for r in d.matched_rules or ())
    out.append(
        "\n"
        f'        <div class="rules">{rules or _NO_RULES}</div>\n'
        "      </div>\n"
        '      <div class="note-box" hidden>\n'
        '        <label>Note <textarea name="note" rows="2" maxlength="4000" placeholder="Why? (optional)">'
        "</textarea></label>\n"
        '        <span class="muted small"><kbd>Esc</kbd> leaves the note; then respond with a key.</span>\n'
        "      </div>\n"
        '      <div class="actions">\n        '
    )
    if item.binary_mode:
        out.append(
            "\n"
            '          <button type="submit" name="thumb" value="up" data-key="a" class="approve"><span '
            'aria-hidden="true">✓</span> Thumbs up <kbd>a</kbd></button>\n'
            '          <button type="submit" name="thumb" value="down" data-key="d" class="dismiss" '
            f'title="{_e(item.thumb_down_meaning)}"><span aria-hidden="true">✗</span> Thumbs down <kbd>d</kbd>'
            "</button>\n        "
        )
    else:
        out.append(
            "\n"
            '          <button type="submit" name="response" value="approve" data-key="a" class="approve">Approve '
            "<kbd>a</kbd></button>\n"
            '          <button type="submit" name="response" value="dismiss" data-key="d" class="dismiss">Dismiss '
            "<kbd>d</kbd></button>\n"
            '          <button type="submit" name="response" value="escalate" data-key="e" class="escalate">'
            "Escalate <kbd>e</kbd></button>\n"
            '          <button type="button" data-key="m" data-toggle-picker>Modify… <kbd>m</kbd></button>\n        '
        )
    out.append(
        "\n"
        '        <button type="button" data-key="n" data-toggle-note class="link">Note <kbd>n</kbd></button>\n'
        "      </div>\n      "
    )
    if not item.binary_mode:
        picks = "".join(
            f'<button type="submit" name="modify_to" value="{_e(str(a))}" data-pick="{n}">{_e(str(a))} '
            f"<kbd>{n}</kbd></button>"
            for n, a in enumerate(item.other_actions, start=1)
        )
        out.append(
            "\n"
            '      <div class="picker" hidden>\n'
            '        <span class="muted">The right action was:</span>\n'
            f"        {picks}\n"
            "      </div>\n      "
        )
    out.append("\n    </div>\n  </form>\n</li>\n\n")
    csrf, age = out.index(_CSRF), out.index(_AGE)
    return "".join(out[:csrf]), "".join(out[csrf + 1 : age]), "".join(out[age + 1 :])


def items_html(items: list[QueueItem], *, respond_url: str, csrf_input: str, now: datetime) -> SafeString:
    """The page's items, one string: the template shows it with one variable rather than a loop of 25."""
    tz, language = timezone.get_current_timezone(), translation.get_language()
    return mark_safe(  # noqa: S308 -- item_html escapes every value
        "".join(
            item_html(i, respond_url=respond_url, csrf_input=csrf_input, now=now, tz=tz, language=language)
            for i in items
        )
    )


def _body_context(
    request: HttpRequest, data: Any, notices: list[RespondResult] | None = None, *, with_stats: bool = True
) -> dict[str, Any]:
    now = timezone.now()
    reviewer = _reviewer(request)
    filters = _filters(data)
    seen = cache.get_many(queue_cache_keys(reviewer=reviewer))  # the page's one round trip to the shared cache
    page = queue_page(
        filters=filters,
        reviewer=reviewer,
        now=now,
        cursor=Cursor.decode(data.get("after")),
        newest_first=_newest_first(request),
        seen=seen,
    )
    asked = str(data.get("amend") or "")
    # Without ``?amend=`` there is nothing to show again (and no second read of the reviewer's last answer).
    amending = (
        amend_item(entry_id=asked, agent_id=_agent_named(data, "amend_agent"), reviewer=reviewer, now=now)
        if asked
        else None
    )
    if amending is not None:
        page.items.insert(0, amending)
    undo = None if amending is not None else last_answer(reviewer=reviewer, now=now, seen=seen)
    filter_query = filters.as_query()
    filter_qs = urlencode(filter_query)
    # The page's links, reversed once here rather than by a {% url %} at each use.
    urls = {name: url_for(f"queue-{name}") for name in ("respond", "stats", "claim")}
    urls["queue"] = url_for("queue")
    next_url = ""
    if page.next_cursor is not None:
        next_url = urls["queue"] + "?" + urlencode({**filter_query, "after": page.next_cursor.encode()})
    # One masked token for the page, as the template's {% csrf_token %} tags share one: masking costs random bytes.
    csrf_token = get_token(request)
    csrf_input = f'<input type="hidden" name="csrfmiddlewaretoken" value="{_e(csrf_token)}">'
    return {
        "filter_qs": filter_qs,
        "next_url": next_url,
        "page": page,
        "urls": urls,
        "csrf_token": csrf_token,
        "items_html": items_html(page.items, respond_url=urls["respond"], csrf_input=csrf_input, now=now),
        # The full page leaves the header figures to their own request (``queue-stats``), so a cold count never
        # holds up the list; after a response they come inline, the counts being warm by then.
        "stats": queue_stats(reviewer=reviewer, now=now, filters=filters) if with_stats else None,
        "notices": notices or [],
        "filter_query": filter_query,
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
