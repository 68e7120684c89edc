"""Reads of the review queue: pending decisions, oldest or newest first, with keyset pagination, and the header.

The queue is ``queued AND response_action IS NULL``, exactly the condition of the partial indexes
``decision_queue_pending`` (timestamp, seq) and ``decision_queue_agent_pending`` (agent, timestamp, seq), so a
page at any depth is one short index range scan: the cursor is the last row's (timestamp, seq), never an OFFSET.
"""

import base64
import binascii
import functools
import hashlib
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection, connections, router
from django.db.models import CharField, Count, Q, QuerySet

from auditlog.exceptions import InvalidEntry
from auditlog.labels import binary_meaning
from auditlog.models import Decision
from loopsite.cache import stamp_get
from loopsite.compiled import Compiled, Param, compiled, totals
from loopsite.kept import keep
from loopsite.rules import rule
from thresholds.models import Agent

PAGE_SIZE = 25
WEEK_RATE_CACHE_SECONDS = 60
PENDING_EXACT_UP_TO = 10_000
PENDING_CACHE_SECONDS = 30


@dataclass(frozen=True)
class QueueFilters:
    agent_id: str | None = None
    action: str | None = None
    confidence_min: float | None = None
    confidence_max: float | None = None
    rule: str | None = None
    date_from: date | None = None  # decisions logged on or after this UTC day
    date_to: date | None = None  # ... and on or before this one

    def as_query(self) -> dict[str, str]:
        """The filters as query-string values, for links that keep them."""
        out = {
            "agent": self.agent_id or "",
            "action": self.action or "",
            "min": "" if self.confidence_min is None else f"{self.confidence_min:g}",
            "max": "" if self.confidence_max is None else f"{self.confidence_max:g}",
            "rule": self.rule or "",
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class Cursor:
    """A keyset position: the (timestamp, seq) of the last row seen. Opaque and URL-safe when encoded."""

    timestamp: datetime
    seq: int

    @classmethod
    def after(cls, decision: Decision) -> "Cursor":
        return cls(decision.timestamp, decision.seq)

    def encode(self) -> str:
        raw = json.dumps([self.timestamp.isoformat(), self.seq], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str | None) -> "Cursor | None":
        """The position, or None for a missing or malformed cursor."""
        if not raw:
            return None
        try:
            stamp, seq = json.loads(base64.urlsafe_b64decode((raw + "=" * (-len(raw) % 4)).encode()))
            parsed = datetime.fromisoformat(stamp)
            number = int(seq)
        except (ValueError, TypeError, binascii.Error):
            return None
        if parsed.tzinfo is None:
            return None
        return cls(parsed, number)


@dataclass(frozen=True)
class FeatureValue:
    name: str
    value: float


@dataclass
class QueueItem:
    decision: "Decision | QueueRow"  # a model instance when amending (it shows the answer given)
    agent_id: str
    actions: list[str]
    binary_mode: bool
    age: timedelta
    features: list[FeatureValue]
    claimed_by_me: bool
    amending: bool = False  # shown again so its reviewer can change the answer (the undo key)
    # What its markup depends on, hashable, when read by the list: the row as fetched, less its claim, and the
    # agent's columns (``auditlog.views_queue`` keeps items rendered under it).
    fingerprint: tuple[Any, ...] | None = None

    @property
    def entry_id(self) -> str:
        return self.decision.entry_id

    @property
    def key(self) -> str:
        """``agentId:entryId``: the item's name in the page's forms, as ids are unique per agent only."""
        return f"{self.agent_id}:{self.entry_id}"

    @property
    def other_actions(self) -> list[str]:
        """What a reviewer may change the action to: every action of the agent but the one taken."""
        return [a for a in self.actions if a != self.decision.action]

    @property
    def thumb_down_meaning(self) -> str:
        return binary_meaning("down", taken_action=self.decision.action, actions=self.actions)

    @property
    def action_rank(self) -> int:
        """0 for the weakest action, 2 or more for the strongest ones (capped, for the colour)."""
        rank = self.actions.index(self.decision.action) if self.decision.action in self.actions else 0
        return min(rank, 2)

    @property
    def above_threshold(self) -> bool:
        confidence = self.decision.confidence
        return confidence is not None and confidence >= self.decision.threshold_used


@dataclass
class QueuePage:
    items: list[QueueItem]
    next_cursor: Cursor | None
    filters: QueueFilters
    cursor: Cursor | None = None
    agents: list[Agent] = field(default_factory=list)
    newest_first: bool = False

    @property
    def actions(self) -> list[str]:
        """Every agent's actions, for the filter (weakest first within an agent, each once)."""
        return list(dict.fromkeys(str(a) for agent in self.agents for a in agent.actions))


@dataclass(frozen=True)
class QueueStats:
    pending: int
    done_today: int
    window_queued: int
    window_responded: int
    window_weeks: int
    warn_below: float
    filtered: bool = False  # ``pending`` counts only what the page's filters let through

    @property
    def week_rate(self) -> float | None:
        """The response rate of the queued decisions the next tuner run reads (its window, up to now)."""
        return self.window_responded / self.window_queued if self.window_queued else None

    @property
    def week_percent(self) -> str:
        """The rate as the header shows it: one decimal below 10 %, so that a few answers out of thousands show."""
        rate = self.week_rate
        if rate is None:
            return "–"
        percent = rate * 100
        if percent < 10:
            return f"{percent:.1f}".removesuffix(".0")
        return f"{percent:.0f}"

    @property
    def low(self) -> bool:
        rate = self.week_rate
        return rate is not None and rate < self.warn_below


def _pending() -> QuerySet[Decision]:
    # Written exactly as the partial indexes' condition so the planner can use them.
    return Decision.objects.filter(queued=True, response_action__isnull=True)


_RULES = Decision._meta.get_field("matched_rules")


def _rule_comparison() -> tuple[str, Any, Callable[[str], Any]]:
    """How a decision's matched rules are compared with one rule on this database: the lookup, the field a bound
    value is prepared as, and the value for a rule. PostgreSQL's JSON containment takes a list; SQLite's JSON has
    none, so the rule as a quoted JSON string matches one whole element."""
    if connection.vendor == "postgresql":
        return "matched_rules__contains", _RULES, lambda name: [name]
    return "matched_rules__icontains", CharField(), json.dumps


def rule_value(name: str) -> Any:
    """What ``rule_filter`` compares the matched rules with."""
    return _rule_comparison()[2](name)


def rule_filter(name: "str | Param") -> Q:
    """Decisions whose matched rules include ``name`` (a ``Param`` is bound to ``rule_value`` of the rule)."""
    lookup, _field, value = _rule_comparison()
    return Q(**{lookup: name if isinstance(name, Param) else value(name)})


def day_start(day: date) -> datetime:
    """Midnight UTC of ``day``: the queue's and the audit trail's date filters count UTC days, as the pages show."""
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- The queue's conditions, compiled once per shape (``loopsite.compiled``) ----------------------------------
#
# Built with the ORM and compiled on every page, the list's conditions cost more Python than the database spent
# running them (docs/bench-queue.md). Each filter is a ``Param``; which filters are set, whether a cursor is given and
# the order make the statement's shape, compiled once per process and database.

_TIME = Decision._meta.get_field("timestamp")
_SEQ = Decision._meta.get_field("seq")
_CLAIMED_BY = Decision._meta.get_field("claimed_by")
_CONFIDENCE = Decision._meta.get_field("confidence")
# Each filter of ``QueueFilters`` but the rule: its lookup, and the field its value is prepared as.
_FILTER_LOOKUPS: dict[str, tuple[str, Any]] = {
    "agent_id": ("agent_id", Decision._meta.get_field("agent")),
    "action": ("action", Decision._meta.get_field("action")),
    "confidence_min": ("confidence__gte", _CONFIDENCE),
    "confidence_max": ("confidence__lte", _CONFIDENCE),
    "date_from": ("timestamp__gte", _TIME),
    "date_to": ("timestamp__lt", _TIME),
}


def _pending_matching(shape: tuple[str, ...]) -> QuerySet[Decision]:
    """Pending decisions under the filters named in ``shape`` (``QueueFilters``' fields), each a ``Param`` of that
    name; the values are ``queue_filter_values``'."""
    qs = _pending()
    for name in shape:
        if name == "rule":
            qs = qs.filter(rule_filter(Param(name, _rule_comparison()[1])))
        elif name in _FILTER_LOOKUPS:
            lookup, prepared_as = _FILTER_LOOKUPS[name]
            qs = qs.filter(**{lookup: Param(name, prepared_as)})
        else:
            raise ValueError(f"not a queue filter: {name!r}")
    return qs


def queue_filter_values(filters: QueueFilters, agents: Sequence[Agent] | None = None) -> dict[str, Any]:
    """The values of the filters ``filters`` sets, by name, as ``_pending_matching`` binds them. ``agents``: the
    agents the page read already (``_agents``), else the agent filter's pk is looked up."""
    values: dict[str, Any] = {}
    if filters.agent_id:
        if agents is None:
            found = Agent.objects.filter(agent_id=filters.agent_id).values_list("pk", flat=True).first()
        else:
            found = next((a.pk for a in agents if a.agent_id == filters.agent_id), None)
        values["agent_id"] = -1 if found is None else found  # an unknown agent has nothing pending
    if filters.action:
        values["action"] = filters.action
    if filters.confidence_min is not None:
        values["confidence_min"] = filters.confidence_min
    if filters.confidence_max is not None:
        values["confidence_max"] = filters.confidence_max
    if filters.rule:
        values["rule"] = rule_value(filters.rule)
    if filters.date_from:
        values["date_from"] = day_start(filters.date_from)
    if filters.date_to:
        values["date_to"] = day_start(filters.date_to) + timedelta(days=1)
    return values


@compiled(Decision)
def _queue_list(shape: tuple[str, ...], after: bool, newest_first: bool, limit: int) -> QuerySet[Any]:
    """The list: pending decisions a reviewer may take (not claimed by someone else, or the claim has run out),
    under the filters, after the cursor, in the queue's order: the ``ITEM_COLUMNS`` of ``limit`` rows."""
    claimable = Q(claimed_by__isnull=True) | Q(claimed_by=Param("reviewer", _CLAIMED_BY))
    claimable |= Q(claimed_until__lte=Param("now", _TIME))
    qs = _pending_matching(shape).filter(claimable)
    if after:
        # The redundant ``timestamp >= t`` (``<=`` newest first) gives the index scan its start; the OR settles ties.
        at, seq = Param("cursor_timestamp", _TIME), Param("cursor_seq", _SEQ)
        if newest_first:
            qs = qs.filter(timestamp__lte=at).filter(Q(timestamp__lt=at) | Q(seq__lt=seq))
        else:
            qs = qs.filter(timestamp__gte=at).filter(Q(timestamp__gt=at) | Q(seq__gt=seq))
    order = ("-timestamp", "-seq") if newest_first else ("timestamp", "seq")
    return qs.order_by(*order).values_list(*ITEM_COLUMNS)[:limit]


@compiled(Decision)
def _pending_count(shape: tuple[str, ...]) -> QuerySet[Any]:
    return totals(_pending_matching(shape), pending=Count("seq"))


def features_ranked(features: dict[str, Any]) -> list[FeatureValue]:
    """Features largest first by absolute value (ties by name), as the queue shows them."""
    pairs = [(str(k), float(v)) for k, v in features.items() if isinstance(v, int | float)]
    return [FeatureValue(k, v) for k, v in sorted(pairs, key=lambda kv: (-abs(kv[1]), kv[0]))]


# The columns a queue item shows (``auditlog.views_queue.item_html``, ``QueueItem``) and its keyset position: the
# list query reads these only (the other 16, the response's among them, are left in the table); and the agents'
# columns the page uses.
ITEM_COLUMNS = (
    "seq",
    "timestamp",
    "entry_id",
    "agent_id",
    "action",
    "confidence",
    "threshold_used",
    "threshold_name",
    "reasoning",
    "features",
    "matched_rules",
    "claimed_by",
    "claimed_until",
)
AGENT_COLUMNS = ("agent_id", "actions", "binary_mode")
# A fetched row's values less its claim: what an item's markup depends on (``QueueItem.fingerprint``).
_shown = operator.itemgetter(*(i for i, name in enumerate(ITEM_COLUMNS) if name not in ("claimed_by", "claimed_until")))


class QueueRow:
    """A pending decision as a queue item reads it: the ``ITEM_COLUMNS`` as attributes, with the values a queryset
    would give them. The list is read by a compiled statement (``_queue_list``), not as model instances."""

    __slots__ = ITEM_COLUMNS
    seq: int
    timestamp: datetime
    entry_id: str
    agent_id: int
    action: str
    confidence: float | None
    threshold_used: float
    threshold_name: str
    reasoning: str
    features: dict[str, Any]
    matched_rules: list[str]
    claimed_by: str | None
    claimed_until: datetime | None
    # Pending, so not answered (an item shown again to change its answer is a ``Decision``).
    response_action: str | None = None
    modified_action: str | None = None

    def __init__(self, values: Sequence[Any]) -> None:
        for name, value in zip(ITEM_COLUMNS, values, strict=True):
            setattr(self, name, value)


# --- Rows kept converted, per process ---------------------------------------------------------------------------
#
# Converting a row (its JSON decoded, on SQLite its times parsed) and ranking its features cost about as much as
# reading it. The same pending rows are read page after page (after every response the body is drawn again), so
# each process keeps them converted under the row as fetched: the same values give the same conversion, and any
# change (a claim taken) is another key. At most ``ROWS_KEPT``, forgotten all at once when full. A kept row is
# shared by the pages that read it: read-only.

ROWS_KEPT = 2048
_rows_kept: dict[tuple[Any, ...], tuple[QueueRow, list[FeatureValue]]] = {}


def _row_kept(statement: Compiled, raw: tuple[Any, ...]) -> tuple[QueueRow, list[FeatureValue]]:
    found = _rows_kept.get(raw)
    if found is None:
        row = QueueRow(statement.convert(raw))
        found = (row, features_ranked(row.features or {}))
        keep(_rows_kept, raw, found, limit=ROWS_KEPT)
    return found


# --- The agents the page names, kept in process under a stamp ------------------------------------------------
#
# Every page needs every agent (the filter's list, and each item's actions and binary mode): a round trip a page,
# for rows that change when an agent is registered or edited. So each process keeps them under a stamp in the shared
# cache, read in the page's one round trip to it (``queue_cache_keys``); every save or delete of an agent deletes
# the stamp once it commits (``auditlog.services.queue_agents_changed``, on the model's signals: whatever path
# changed it), and each process reads them again at its next page. The stamp is read before the agents, so a change
# committed after that read deletes the stamp the copy was kept under. Unreachable, the cache vouches for nothing:
# the agents are read.

QUEUE_AGENTS_STAMP = "queue-agents:stamp"
QUEUE_AGENTS_STAMP_SECONDS = 7 * 24 * 3600
_agents_kept: dict[str, tuple[str, list[Agent]]] = {}  # database alias -> (stamp, agents)


def queue_cache_keys(*, reviewer: str) -> list[str]:
    """What one queue page reads from the shared cache, in one ``get_many``: the agents' stamp and the
    reviewer's kept last answer with its stamp. The page passes what it read to ``queue_page`` and
    ``last_answer`` as ``seen``."""
    return [QUEUE_AGENTS_STAMP, *last_answer_keys(reviewer)]


def _agents(alias: str, seen: dict[str, Any] | None = None) -> list[Agent]:
    """Every agent with the columns the page uses (``AGENT_COLUMNS``), by agent id: this process's copy while its
    stamp holds, else one plain statement."""
    stamp = stamp_get(QUEUE_AGENTS_STAMP, timeout=QUEUE_AGENTS_STAMP_SECONDS, seen=(seen or {}).get(QUEUE_AGENTS_STAMP))
    kept = _agents_kept.get(alias)
    if stamp is not None and kept is not None and kept[0] == stamp:
        return kept[1]
    agents = sorted(Agent.objects.using(alias).raw(_agents_sql(alias)), key=lambda a: a.agent_id)
    if stamp is not None:
        _agents_kept[alias] = (stamp, agents)
    return agents


@functools.cache
def _agents_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    fields = [Agent._meta.get_field(name) for name in ("id", *AGENT_COLUMNS)]
    columns = ", ".join(quote(f.column) for f in fields)  # type: ignore[union-attr,arg-type]
    return f"SELECT {columns} FROM {quote(Agent._meta.db_table)}"


def queue_page(
    *,
    filters: QueueFilters,
    reviewer: str,
    now: datetime,
    cursor: Cursor | None = None,
    limit: int = PAGE_SIZE,
    newest_first: bool = False,
    seen: dict[str, Any] | None = None,
) -> QueuePage:
    """One page of the queue, oldest first (or newest first), starting after ``cursor``. ``seen``: what the page
    already read from the shared cache (``queue_cache_keys``)."""
    agents = _agents(router.db_for_read(Decision), seen)
    values = queue_filter_values(filters, agents)
    statement = _queue_list(tuple(values), cursor is not None, newest_first, limit + 1)
    if cursor is not None:
        values.update(cursor_timestamp=cursor.timestamp, cursor_seq=cursor.seq)
    fetched = statement.fetched(**values, reviewer=reviewer, now=now)
    more = len(fetched) > limit
    # Per agent, once a page: its id, actions and mode, and that part of its items' fingerprints.
    by_pk = {}
    for a in agents:
        actions = [str(x) for x in a.actions]
        by_pk[a.pk] = (a.agent_id, actions, a.binary_mode, (a.agent_id, tuple(actions), a.binary_mode))
    items = []
    for raw in fetched[:limit]:
        d, features = _row_kept(statement, raw)
        agent_id, actions, binary_mode, agent_key = by_pk[d.agent_id]
        items.append(
            QueueItem(
                decision=d,
                agent_id=agent_id,
                actions=actions,
                binary_mode=binary_mode,
                age=max(now - d.timestamp, timedelta(0)),
                features=features,
                claimed_by_me=d.claimed_by == reviewer and d.claimed_until is not None and d.claimed_until > now,
                fingerprint=(_shown(raw), agent_key),
            )
        )
    last = items[-1].decision if items else None
    next_cursor = Cursor(last.timestamp, last.seq) if more and last is not None else None
    return QueuePage(
        items=items,
        next_cursor=next_cursor,
        filters=filters,
        cursor=cursor,
        agents=agents,
        newest_first=newest_first,
    )


# --- The reviewer's last answer (the undo key), kept per reviewer ----------------------------------------------
#
# Read from the database it probes ``decision_responder_time`` in every weekly partition (a recent answer may be
# to a decision of any week), which was a fifth of the queue page's time. So it is kept in the shared cache, per
# reviewer, as a pointer (seq, timestamp, responded_at) to that answer, or "none since <time>", under a stamp:
# ``last_answers_changed`` (auditlog.services), which every write of an answer calls, deletes the stamps of the
# responders it touched once the write commits, and a kept copy counts only under the stamp it was read under.
# The stamp is read before the database, so an answer committed after that read deletes the stamp the copy holds.
# A kept pointer is read back by its primary key (one partition) and used only while that row is still this
# reviewer's answer of that time, so an amendment by someone else, a deleted row or a retention drop falls back
# to the query. The cache is an optimisation: unreachable, every read is the query.

LAST_ANSWER_CACHE_SECONDS = 3600
LAST_ANSWER_STAMP_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class LastAnswer:
    """A reviewer's latest answer, as the undo link names it."""

    seq: int
    timestamp: datetime
    entry_id: str
    agent_id: str  # the agent's agentId
    response_action: str
    modified_action: str | None
    responder_id: str
    responded_at: datetime


_LAST_ANSWER_COLUMNS = (
    "seq",
    "timestamp",
    "entry_id",
    "agent__agent_id",
    "response_action",
    "modified_action",
    "responder_id",
    "responded_at",
)


def _reviewer_key(reviewer: str) -> str:
    # Responder ids come from imports and the API too: hashed, any text makes a valid cache key.
    return hashlib.blake2b(reviewer.encode(), digest_size=16).hexdigest()


def last_answer_keys(reviewer: str) -> tuple[str, str]:
    """The shared cache's keys of the reviewer's last answer: its stamp, and the copy kept under it."""
    hours = int(rule("AMEND_WINDOW_HOURS"))
    return last_answer_stamp_key(reviewer), f"queue-last-answer:v1:{hours}:{_reviewer_key(reviewer)}"


def last_answer_stamp_key(reviewer: str) -> str:
    """The cache key whose deletion makes the reviewer's kept last answer be read again."""
    return f"queue-last-answer:stamp:{_reviewer_key(reviewer)}"


def _last_answer_query(*, reviewer: str, since: datetime) -> LastAnswer | None:
    row = (
        Decision.objects.filter(responder_id=reviewer, response_action__isnull=False, responded_at__gte=since)
        .order_by("-responded_at", "-seq")
        .values_list(*_LAST_ANSWER_COLUMNS)
        .first()
    )
    return None if row is None else LastAnswer(*row)


_UNKNOWN = object()


def _last_answer_kept(kept: tuple[Any, ...], *, reviewer: str, since: datetime) -> Any:
    """The answer a kept copy gives (a ``LastAnswer`` or None), or ``_UNKNOWN`` when it cannot be trusted."""
    _stamp, kept_since, pointer = kept
    if pointer is None:
        # No answer at or after ``kept_since``; nothing older counts either while the window only moves on.
        return None if since >= kept_since else _UNKNOWN
    seq, timestamp, responded_at = pointer
    if responded_at < since:
        return None  # the latest answer is out of the window, so is every older one
    row = Decision.objects.filter(seq=seq, timestamp=timestamp).values_list(*_LAST_ANSWER_COLUMNS).first()
    answer = None if row is None else LastAnswer(*row)
    if (
        answer is None
        or answer.responder_id != reviewer
        or answer.response_action is None
        or answer.responded_at != responded_at
    ):
        return _UNKNOWN
    return answer


def last_answer(*, reviewer: str, now: datetime, seen: dict[str, Any] | None = None) -> LastAnswer | None:
    """The reviewer's latest answer while they may still change it (the queue's undo key). ``seen``: the page's
    read of ``last_answer_keys`` (and more) from the shared cache, made in one round trip with its other keys."""
    since = now - timedelta(hours=int(rule("AMEND_WINDOW_HOURS")))
    stamp_key, key = last_answer_keys(reviewer)
    got = seen if seen is not None else cache.get_many([stamp_key, key])  # one round trip for both
    seen, kept = got.get(stamp_key), got.get(key)
    if seen is not None and isinstance(kept, tuple) and len(kept) == 3 and kept[0] == seen:
        answer = _last_answer_kept(kept, reviewer=reviewer, since=since)
        if answer is not _UNKNOWN:
            return answer  # type: ignore[no-any-return]
    stamp = stamp_get(stamp_key, timeout=LAST_ANSWER_STAMP_SECONDS, seen=seen)
    found = _last_answer_query(reviewer=reviewer, since=since)
    if stamp is not None:
        pointer = None if found is None else (found.seq, found.timestamp, found.responded_at)
        cache.set(key, (stamp, since, pointer), timeout=LAST_ANSWER_CACHE_SECONDS)
    return found


def amend_item(*, entry_id: str, agent_id: str | None = None, reviewer: str, now: datetime) -> QueueItem | None:
    """An answered decision shown again at the top of the queue so its answer can be changed; None when it is
    not this reviewer's answer any more (the service decides who may amend; this only offers one's own).
    ``agent_id`` says whose id ``entry_id`` is (ids are unique per agent)."""
    answer = last_answer(reviewer=reviewer, now=now)
    if answer is None or answer.entry_id != entry_id or agent_id not in (None, answer.agent_id):
        return None
    decision = (
        Decision.objects.select_related("agent")
        .filter(seq=answer.seq, timestamp=answer.timestamp, responder_id=reviewer, response_action__isnull=False)
        .first()
    )
    if decision is None:
        return None
    agent = decision.agent
    return QueueItem(
        decision=decision,
        agent_id=agent.agent_id,
        actions=[str(a) for a in agent.actions],
        binary_mode=agent.binary_mode,
        age=max(now - decision.timestamp, timedelta(0)),
        features=features_ranked(decision.features or {}),
        claimed_by_me=False,
        amending=True,
    )


WINDOW_KEY = "queue-window-rate"


def _window_start(now: datetime) -> datetime:
    return now - timedelta(weeks=int(rule("DEFAULT_WINDOW_WEEKS")))


def _window_counts(*, now: datetime) -> tuple[int, int]:
    """(queued, responded) of the decisions logged in the tuner's window (the last ``DEFAULT_WINDOW_WEEKS`` weeks),
    cached for a minute: it reads weeks of rows. The window, not the ISO week, because the backlog is answered
    weeks after its decisions: an answer to a decision of an earlier week is evidence for the next run all the same.

    ``agent IN (...)`` lets PostgreSQL take the range from the (agent, timestamp, seq) index instead of scanning
    the table.
    """
    cached = cache.get(WINDOW_KEY)
    if cached is not None:
        return int(cached[0]), int(cached[1])
    agent_pks = list(Agent.objects.values_list("pk", flat=True))
    counts = Decision.objects.filter(
        agent_id__in=agent_pks, queued=True, timestamp__gte=_window_start(now), timestamp__lte=now
    ).aggregate(queued=Count("seq"), responded=Count("seq", filter=Q(response_action__isnull=False)))
    result = (int(counts["queued"] or 0), int(counts["responded"] or 0))
    cache.set(WINDOW_KEY, result, timeout=WEEK_RATE_CACHE_SECONDS)
    return result


def week_rate_note_responses(*, decisions: list[Decision], now: datetime) -> None:
    """Count just-recorded responses into the cached window figures, so a reviewer sees them at once."""
    cached = cache.get(WINDOW_KEY)
    if cached is None:
        return
    start = _window_start(now)
    fresh = sum(1 for d in decisions if d.queued and start <= d.timestamp <= now)
    if fresh:
        cache.set(WINDOW_KEY, (int(cached[0]), int(cached[1]) + fresh), timeout=WEEK_RATE_CACHE_SECONDS)


def queue_pending_count() -> int:
    """Exact and live up to ``PENDING_EXACT_UP_TO`` (a short index-only scan); above that, an exact count kept
    for ``PENDING_CACHE_SECONDS``, as counting 100,000 index entries on every response costs tens of ms."""
    capped = _pending().values("seq")[: PENDING_EXACT_UP_TO + 1].count()
    if capped <= PENDING_EXACT_UP_TO:
        return capped
    cached = cache.get("queue-pending-count")
    if cached is None:
        cached = _pending().count()
        cache.set("queue-pending-count", cached, timeout=PENDING_CACHE_SECONDS)
    return int(cached)


def queue_stats(*, reviewer: str, now: datetime, filters: QueueFilters | None = None) -> QueueStats:
    """The header: pending now (under the page's filters, when any), what this reviewer did today (UTC day), and
    the response rate of the tuner's window."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    done_today = Decision.objects.filter(
        responder_id=reviewer, responded_at__gte=today, response_action__isnull=False
    ).count()
    window_queued, window_responded = _window_counts(now=now)
    filtered = bool(filters and filters.as_query())
    if filters and filtered:
        values = queue_filter_values(filters)
        pending = int(_pending_count(tuple(values)).one(**values)[0])
    else:
        pending = queue_pending_count()
    return QueueStats(
        pending=pending,
        done_today=done_today,
        window_queued=window_queued,
        window_responded=window_responded,
        window_weeks=int(rule("DEFAULT_WINDOW_WEEKS")),
        warn_below=float(rule("LOW_RESPONSE_WARNING")),
        filtered=filtered,
    )


# --- GET /decisions: newest first, keyset-paginated -------------------------------------------------------


@dataclass(frozen=True)
class DecisionFilters:
    """What ``GET /decisions`` may filter on. ``until`` is exclusive."""

    agent_pk: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    has_response: bool | None = None


def decision_page(*, filters: DecisionFilters, cursor: str | None, limit: int) -> tuple[list[Decision], str | None]:
    """One page of decisions, newest first, keyset-paginated on (timestamp, seq) so that pages neither repeat
    nor skip rows while new ones arrive. Returns the rows and the cursor of the next page (None on the last).
    """
    rows = Decision.objects.select_related("agent", "config_version").order_by("-timestamp", "-seq")
    if filters.agent_pk is not None:
        rows = rows.filter(agent_id=filters.agent_pk)
    if filters.since is not None:
        rows = rows.filter(timestamp__gte=filters.since)
    if filters.until is not None:
        rows = rows.filter(timestamp__lt=filters.until)
    if filters.action is not None:
        rows = rows.filter(action=filters.action)
    if filters.has_response is not None:
        rows = rows.filter(response_action__isnull=not filters.has_response)
    if cursor:
        position = Cursor.decode(cursor)
        if position is None:
            raise InvalidEntry("cursor is not one this API gave out", field="cursor")
        rows = rows.filter(Q(timestamp__lt=position.timestamp) | Q(timestamp=position.timestamp, seq__lt=position.seq))
    page = list(rows[: limit + 1])
    if len(page) > limit:
        page = page[:limit]
        return page, Cursor.after(page[-1]).encode()
    return page, None


def decision_read(*, entry_id: str, agent: Agent | None = None, agent_id: str | None = None) -> Decision:
    """One decision to show, scoped as ``auditlog.services.decision_get`` says; when retention has archived its
    week, the copy the evidence table kept (a cited decision), marked ``archived``. Never for writing: a response
    to an archived decision finds nothing to answer."""
    from auditlog.exceptions import AmbiguousEntryId, DecisionNotFound
    from auditlog.models import EvidenceDecision
    from auditlog.services import decision_get

    try:
        return decision_get(entry_id=entry_id, agent=agent, agent_id=agent_id)
    except DecisionNotFound:
        kept = EvidenceDecision.objects.select_related("agent", "config_version").filter(entry_id=entry_id)
        if agent is not None:
            kept = kept.filter(agent=agent) if agent_id in (None, agent.agent_id) else kept.none()
        elif agent_id is not None:
            kept = kept.filter(agent__agent_id=agent_id)
        found = list(kept[:2])
        if len(found) != 1:
            if len(found) > 1:
                raise AmbiguousEntryId(
                    f"decision id {entry_id!r} is used by more than one agent; add agentId to say which",
                    field="agentId",
                ) from None
            raise
    return evidence_as_decision(found[0])


def evidence_as_decision(kept: Any) -> Decision:
    """An evidence-table row as the (unsaved) decision it was, so every page and serializer shows it alike."""
    decision = Decision(**{f.attname: getattr(kept, f.attname) for f in Decision._meta.concrete_fields})
    decision.agent, decision.config_version = kept.agent, kept.config_version
    decision._state.adding = False
    decision.archived = True  # type: ignore[attr-defined]
    return decision
