"""Writes to the decision log: logging decisions (one or a batch) and recording a human response once."""

import bisect
import functools
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, NamedTuple

import orjson
import psycopg
from django.db import IntegrityError, ProgrammingError, connection, transaction

from auditlog.entry import (
    EntryInput,
    ResponseInput,
    content_hash_matches,
    entry_parse,
    response_parse,
    sample_draw,
)
from auditlog.exceptions import AlreadyResponded, AmbiguousEntryId, DecisionNotFound, EntryConflict, InvalidEntry
from auditlog.models import Decision, DecisionKey, ResponseRevision, ReviewReason
from auditlog.partitions import partition_name, partitions_taking_writes, week_of
from auditlog.selectors import QUEUE_AGENTS_STAMP, last_answer_stamp_key
from loopsite.cache import stamps_delete_on_commit
from loopsite.exceptions import DomainError, Forbidden
from loopsite.kept import keep
from loopsite.rules import rule
from loopsite.statements import fetch
from thresholds.models import Agent, ConfigVersion
from thresholds.selectors import LiveConfig, config_get_live

logger = logging.getLogger(__name__)

Status = Literal["created", "duplicate", "conflict", "invalid"]


@dataclass(frozen=True)
class _Version:
    pk: int
    number: int
    activated_at: datetime
    values: dict[str, float]
    canary: bool = False  # a canary arm's version: named by its entries, never live at a timestamp


# {agent pk: (the live config object it was read with, every version of the agent)}: ``_AgentContext.history``.
_histories: dict[int, tuple[LiveConfig, list["_Version"]]] = {}


@dataclass
class _AgentContext:
    """What checking and storing an agent's entries needs, loaded once per request or batch."""

    agent: Agent
    live: LiveConfig
    _history: list[_Version] | None = None
    # Worked out once per request or batch, not per entry:
    _dated: tuple[list[_Version], list[datetime]] | None = None  # versions that went live, and when
    _named: dict[tuple[str, float], str] = field(default_factory=dict)  # (action, thresholdUsed) -> its threshold

    @classmethod
    def load(cls, agent: Agent, seen: Mapping[str, Any] | None = None) -> "_AgentContext":
        # The live config carries the thresholds' gated actions, so a logged decision costs no query for them.
        return cls(agent=agent, live=config_get_live(agent=agent, seen=seen))

    def history(self) -> list[_Version]:
        """Every version of the agent, oldest first; read only for entries older than the live one.

        Kept in process beside the live config it was read under: ``config_get_live`` hands out the same object
        until a change of config, so while it does, no version was added (versions are rows never edited).
        """
        if self._history is None:
            kept = _histories.get(self.agent.pk)
            if kept is not None and kept[0] is self.live:
                self._history = kept[1]
            else:
                rows = ConfigVersion.objects.filter(agent_id=self.agent.pk).order_by("number")
                self._history = [
                    _Version(
                        v.pk,
                        v.number,
                        v.activated_at,
                        {k: float(x) for k, x in v.values.items()},
                        v.source == ConfigVersion.Source.CANARY,
                    )
                    for v in rows
                ]
                keep(_histories, self.agent.pk, (self.live, self._history), limit=1000)
        return self._history

    def version_for(self, entry: EntryInput, *, threshold_name: str) -> _Version:
        """The version the decision was made under (contract, "Decision"): the one the agent names in
        ``configVersion``, checked against its ``thresholdUsed``; else the one live at the decision's timestamp,
        so an upload that was buffered or retried is not blamed on a version that went live after it."""
        live = self.live
        if entry.config_version is None:
            if entry.timestamp >= live.activated_at:
                return _Version(live.version_pk, live.version, live.activated_at, live.thresholds)
            if self._dated is None:
                history = [v for v in self.history() if not v.canary]
                self._dated = (history, [v.activated_at for v in history])
            history, times = self._dated
            return history[max(0, bisect.bisect_right(times, entry.timestamp) - 1)]
        if entry.config_version == live.version:
            version = _Version(live.version_pk, live.version, live.activated_at, live.thresholds)
        else:
            found = [v for v in self.history() if v.number == entry.config_version]
            if not found:
                raise InvalidEntry(
                    f"configVersion {entry.config_version} is not a version of {self.agent.agent_id} "
                    f"(1 to {live.version})",
                    field="configVersion",
                )
            version = found[0]
        value = version.values.get(threshold_name)
        if value is not None and abs(value - entry.threshold_used) > 1e-9:
            raise InvalidEntry(
                f"configVersion {version.number} has {threshold_name} = {value:g}, but decision.thresholdUsed is "
                f"{entry.threshold_used:g}",
                field="configVersion",
            )
        return version

    def threshold_for(self, entry: EntryInput) -> str:
        if entry.threshold_name is not None:
            if entry.threshold_name not in self.live.gates:
                raise InvalidEntry(
                    f"decision.thresholdName {entry.threshold_name!r} is not a threshold of {self.agent.agent_id}",
                    field="decision.thresholdName",
                )
            return entry.threshold_name
        # A batch's entries share a few pairs of action and threshold: each pair's answer is worked out once.
        named = self._named.get((entry.action, entry.threshold_used))
        if named is None:
            named = self._named[entry.action, entry.threshold_used] = self._gated_by(entry.action, entry.threshold_used)
        return named

    def _gated_by(self, action: str, threshold_used: float) -> str:
        gating = [n for n, gated in self.live.gates.items() if gated == action]
        if gating:
            exact = [n for n in gating if self.live.thresholds.get(n) == threshold_used]
            return (exact or sorted(gating))[0]
        # The weakest action: the lowest threshold is the one it fell below.
        return min(self.live.thresholds, key=lambda n: (self.live.thresholds[n], n))

    @functools.cached_property
    def actions(self) -> list[str]:
        return list(self.agent.actions)

    def check(self, entry: EntryInput) -> str:
        actions = self.actions
        if entry.action not in actions:
            raise InvalidEntry(
                f"decision.action {entry.action!r} is not one of {self.agent.agent_id}'s actions "
                f"({', '.join(actions)})",
                field="decision.action",
            )
        if entry.confidence is None and not self.agent.rule_based:
            raise InvalidEntry(
                f"decision.confidence is required: only a rule-based agent may leave it out, and "
                f"{self.agent.agent_id} is not one",
                field="decision.confidence",
            )
        if entry.shadow_action is not None and entry.shadow_action not in actions:
            raise InvalidEntry(
                f"decision.shadowAction {entry.shadow_action!r} is not one of {self.agent.agent_id}'s actions "
                f"({', '.join(actions)})",
                field="decision.shadowAction",
            )
        response = entry.human_response
        if response is not None and response.action == "modify" and response.modified_action not in actions:
            raise InvalidEntry(
                f"humanResponse.modifiedAction must be one of {', '.join(actions)}",
                field="humanResponse.modifiedAction",
            )
        return self.threshold_for(entry)

    def version_pk(self, entry: EntryInput, *, threshold_name: str) -> tuple[int, int]:
        """(pk, number) of ``version_for``, without making a ``_Version`` for the usual entry: no
        ``configVersion`` and decided under the live one."""
        live = self.live
        if entry.config_version is None and entry.timestamp >= live.activated_at:
            return live.version_pk, live.version
        version = self.version_for(entry, threshold_name=threshold_name)
        return version.pk, version.number

    def row(self, entry: EntryInput, *, threshold_name: str, now: datetime) -> tuple[Any, ...]:
        """The decision row, flat, in ``DECISION_COLUMNS`` order, JSON columns as JSON text: what COPY, the
        one-statement insert and SQLite's ``executemany`` write."""
        version_pk, _ = self.version_pk(entry, threshold_name=threshold_name)
        agent = self.agent
        weakest = self.weakest
        fired = entry.action != weakest
        reason = _FIRED
        if not fired:
            draw = sample_draw(entry.id)
            reason = _SAMPLED if draw < agent.review_sample_rate else _NOT_QUEUED
            if reason == _NOT_QUEUED and entry.shadow_action not in (None, weakest) and draw < self.shadow_rate:
                # The same draw: the uniform sample is unchanged, and these are the extra ones beyond it.
                reason = _SHADOW
        shadow_proposal = entry.shadow_proposal_id
        if shadow_proposal is None and entry.shadow_action is not None:
            shadow_proposal = self.live.shadow_proposal_id
        # Stored and shown in UTC, so the entry a POST returns reads the same as the one read back later.
        timestamp = entry.timestamp.astimezone(UTC)
        response = entry.human_response
        return (
            entry.id,
            agent.id,  # not ``pk``: a property that looks the field up on every read
            entry.session_id,
            timestamp,
            now,
            entry.action,
            entry.confidence,
            entry.threshold_used,
            threshold_name,
            entry.reasoning,
            entry.input_hash,
            (entry.features_json or orjson.dumps(entry.features)).decode(),
            orjson.dumps(entry.matched_rules).decode(),
            version_pk,
            reason,
            reason != _NOT_QUEUED,
            entry.content_hash,
            *(
                _NO_RESPONSE_ROW
                if response is None
                else _response_values(response, timestamp=timestamp, source="import").values()
            ),
            None,  # claimed_by
            None,  # claimed_until
            entry.shadow_action,
            shadow_proposal,
        )

    def decision(self, entry: EntryInput, row: tuple[Any, ...], *, seq: int) -> Decision:
        """The model of a row just written, as a read would load it, for rendering: no query."""
        values = [seq, *row]
        values[1 + _FEATURES_AT] = entry.features
        values[1 + _RULES_AT] = entry.matched_rules
        # ``from_db`` takes every column in the model's order.
        decision = Decision.from_db(connection.alias, _model_attnames(), [values[i] for i in _model_order()])
        decision.agent = self.agent
        _, number = self.version_pk(entry, threshold_name=str(row[_THRESHOLD_NAME_AT]))
        # Only its id, agent and number loaded (the rest load on access).
        decision.config_version = ConfigVersion.from_db(
            None, ["id", "agent_id", "number"], [row[_VERSION_AT], self.agent.pk, number]
        )
        return decision

    @functools.cached_property
    def weakest(self) -> str:
        return self.agent.weakest_action

    @property
    def shadow_rate(self) -> float:
        return float(rule("SHADOW_REVIEW_RATE"))


# The decision table's columns as the writers send them (attribute names; all are also the column names).
DECISION_COLUMNS = (
    "entry_id",
    "agent_id",
    "session_id",
    "timestamp",
    "received_at",
    "action",
    "confidence",
    "threshold_used",
    "threshold_name",
    "reasoning",
    "input_hash",
    "features",
    "matched_rules",
    "config_version_id",
    "review_reason",
    "queued",
    "content_hash",
    "response_action",
    "responded_at",
    "responder_id",
    "modified_action",
    "response_note",
    "time_to_respond",
    "response_source",
    "claimed_by",
    "claimed_until",
    "shadow_action",
    "shadow_proposal_id",
)
KEY_COLUMNS = ("entry_id", "content_hash", "agent_id", "timestamp")
_FEATURES_AT = DECISION_COLUMNS.index("features")
_RULES_AT = DECISION_COLUMNS.index("matched_rules")
_VERSION_AT = DECISION_COLUMNS.index("config_version_id")
_THRESHOLD_NAME_AT = DECISION_COLUMNS.index("threshold_name")
_DECISION_TIMES = tuple(
    i for i, c in enumerate(DECISION_COLUMNS) if c in ("timestamp", "received_at", "responded_at", "claimed_until")
)
_KEY_TIMES = (KEY_COLUMNS.index("timestamp"),)
_AGENT_AT = DECISION_COLUMNS.index("agent_id")
_TIMESTAMP_AT = DECISION_COLUMNS.index("timestamp")
_FIRED, _SAMPLED, _NOT_QUEUED = ReviewReason.FIRED.value, ReviewReason.SAMPLED.value, ReviewReason.NONE.value
_SHADOW = ReviewReason.SHADOW.value
_NO_RESPONSE_ROW = (None,) * 7


@functools.cache
def _model_attnames() -> list[str]:
    return [f.attname for f in Decision._meta.concrete_fields]


@functools.cache
def _model_order() -> list[int]:
    """Where each of the model's columns is in ``("seq", *DECISION_COLUMNS)``; a column the writers leave out
    fails here, at the first logged decision, rather than storing NULL."""
    written = ("seq", *DECISION_COLUMNS)
    return [written.index(name) for name in _model_attnames()]


def _response_values(response: ResponseInput, *, timestamp: datetime, source: str) -> dict[str, Any]:
    return {
        "response_action": response.action,
        "responded_at": response.responded_at.astimezone(UTC),
        "responder_id": response.responder_id,
        "modified_action": response.modified_action if response.action == "modify" else None,
        "response_note": response.note,
        "time_to_respond": (
            response.time_to_respond
            if response.time_to_respond is not None
            else (response.responded_at - timestamp).total_seconds()
        ),
        "response_source": source,
    }


def _apply_response(decision: Decision, response: ResponseInput, *, source: str) -> None:
    for name, value in _response_values(response, timestamp=decision.timestamp, source=source).items():
        setattr(decision, name, value)


def last_answers_changed(responder_ids: Iterable[str | None]) -> None:
    """Called after every write of an answer (first, amended, in bulk, logged with its decision) with the
    responders whose latest answer it may have changed: their kept last answer (the queue's undo key,
    ``auditlog.selectors.last_answer``) is read again from the database.

    Their stamps are deleted once the write commits, and inside a transaction at once too
    (``stamps_delete_on_commit``). When the cache cannot be reached the deletes go to the outbox and are retried
    until they land."""
    keys = sorted({last_answer_stamp_key(r) for r in responder_ids if r})
    if keys:
        stamps_delete_on_commit(*keys)


def queue_agents_changed(**_signal: Any) -> None:
    """Called when an agent is saved or deleted (``auditlog.apps`` connects it to the model's signals, so every
    path counts): every process reads the queue's agents (``auditlog.selectors._agents``) again at its next page,
    once the change commits, and reads in the same transaction at once."""
    stamps_delete_on_commit(QUEUE_AGENTS_STAMP)


def _agent_for(entry: EntryInput, acting_agent: Agent | None, known: dict[str, Agent] | None = None) -> Agent:
    """The agent an entry is logged for: the key's own (and only it), or the one its agentId names. ``known``:
    the agents a batch has already looked up, so a batch of one agent's entries reads it once."""
    if acting_agent is not None:
        if entry.agent_id != acting_agent.agent_id:
            if not Agent.objects.filter(agent_id=entry.agent_id).exists():
                raise InvalidEntry(f"agentId {entry.agent_id!r} is not a registered agent", field="agentId")
            raise Forbidden(
                f"agentId {entry.agent_id!r} is not this key's agent ({acting_agent.agent_id})",
                field="agentId",
            )
        return acting_agent
    found = known.get(entry.agent_id) if known is not None else None
    if found is not None:
        return found
    try:
        found = Agent.objects.get(agent_id=entry.agent_id)
    except Agent.DoesNotExist:
        raise InvalidEntry(f"agentId {entry.agent_id!r} is not a registered agent", field="agentId") from None
    if known is not None:
        known[entry.agent_id] = found
    return found


def decision_key_get(*, entry_id: str, agent: Agent | None = None, agent_id: str | None = None) -> DecisionKey:
    """The registry row of one decision. Ids are unique per agent, so which agent's id is meant decides.

    ``agent`` is the caller's own agent (an agent key): only its ids exist for it, and another agent's id is
    "not found" exactly as one nobody used, whatever ``agent_id`` it names. ``agent_id`` is the agentId a person
    names; without it, an id used by one agent is that agent's and one used by several raises
    ``AmbiguousEntryId``, which names the agents and asks for agentId.
    """
    not_found = DecisionNotFound(f"no decision with id {entry_id!r}", field="id")
    keys = DecisionKey.objects.filter(entry_id=entry_id)
    if agent is not None:
        if agent_id is not None and agent_id != agent.agent_id:
            raise not_found
        keys = keys.filter(agent_id=agent.pk)
    elif agent_id is not None:
        keys = keys.filter(agent_id__in=Agent.objects.filter(agent_id=agent_id).values("pk"))
        not_found = DecisionNotFound(f"no decision with id {entry_id!r} of agent {agent_id!r}", field="id")
    found = list(keys[:2])
    if not found:
        raise not_found
    if len(found) > 1:
        users = Agent.objects.filter(pk__in=DecisionKey.objects.filter(entry_id=entry_id).values("agent_id"))
        names = ", ".join(sorted(users.values_list("agent_id", flat=True)))
        raise AmbiguousEntryId(
            f"decision id {entry_id!r} is used by more than one agent ({names}); add agentId to say which",
            field="agentId",
        )
    return found[0]


def decision_get(*, entry_id: str, agent: Agent | None = None, agent_id: str | None = None) -> Decision:
    """One decision by its id, scoped as ``decision_key_get`` says."""
    key = decision_key_get(entry_id=entry_id, agent=agent, agent_id=agent_id)
    # The timestamp lets PostgreSQL go straight to one week's partition.
    return Decision.objects.select_related("agent", "config_version").get(
        agent_id=key.agent_id, entry_id=key.entry_id, timestamp=key.timestamp
    )


def _existing(entry: EntryInput, agent: Agent) -> tuple[Status, Decision]:
    key = DecisionKey.objects.get(agent_id=agent.pk, entry_id=entry.id)
    if not content_hash_matches(entry, key.content_hash):
        raise EntryConflict(f"id {entry.id!r} exists already with other content", field="id")
    return "duplicate", decision_get(entry_id=entry.id, agent=agent)


@dataclass(frozen=True)
class _Statements:
    """The SQL of the logging paths, made once per process: no query is compiled per request or batch."""

    copy_keys: str
    insert_key: str
    insert_decision: str
    insert_both: str  # PostgreSQL: both rows in one statement
    known: str  # PostgreSQL: the batch's ids in one array parameter

    @classmethod
    def make(cls) -> "_Statements":
        quote = connection.ops.quote_name
        keys, decisions = quote(DecisionKey._meta.db_table), quote(Decision._meta.db_table)
        key_columns = ", ".join(quote(c) for c in KEY_COLUMNS)
        columns = ", ".join(quote(c) for c in DECISION_COLUMNS)
        key_marks = ", ".join(["%s"] * len(KEY_COLUMNS))
        marks = ", ".join(["%s"] * len(DECISION_COLUMNS))
        return cls(
            copy_keys=f"COPY {keys} ({key_columns}) FROM STDIN (FORMAT BINARY)",
            insert_key=f"INSERT INTO {keys} ({key_columns}) VALUES ({key_marks})",
            insert_decision=f"INSERT INTO {decisions} ({columns}) VALUES ({marks})",
            insert_both=(
                f"WITH registered AS (INSERT INTO {keys} ({key_columns}) VALUES ({key_marks})) "
                f"INSERT INTO {decisions} ({columns}) VALUES ({marks}) RETURNING {quote('seq')}"
            ),
            known=(
                f"SELECT {quote('entry_id')}, {quote('content_hash')} FROM {keys} "
                f"WHERE {quote('agent_id')} = %s AND {quote('entry_id')} = ANY(%s)"
            ),
        )


_statements: _Statements | None = None


def _sql() -> _Statements:
    global _statements
    if _statements is None:
        _statements = _Statements.make()
    return _statements


def _key_row(entry: EntryInput, agent_pk: int) -> tuple[Any, ...]:
    return (entry.id, entry.content_hash, agent_pk, entry.timestamp)


def _sqlite_rows(rows: list[tuple[Any, ...]], times: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """Rows with their datetimes as Django stores them in SQLite (naive UTC text), for a raw ``executemany``."""
    adapt = connection.ops.adapt_datetimefield_value
    utc = connection.timezone == UTC

    def text(value: Any) -> Any:
        # Django's own adaptation (naive in the connection's zone, then ``str``), without its checks per value.
        if utc and isinstance(value, datetime) and value.tzinfo is not None:
            return str(value.astimezone(UTC).replace(tzinfo=None))
        return adapt(value)

    out = []
    for row in rows:
        values = list(row)
        for i in times:
            values[i] = text(values[i])
        out.append(tuple(values))
    return out


def _insert(key_row: tuple[Any, ...], row: tuple[Any, ...]) -> int:
    """Write one registry row and its decision; returns the decision's ``seq``. A taken id raises
    ``IntegrityError`` and writes neither.

    On PostgreSQL both go in one statement (a data-modifying CTE): atomic on its own, and outside a transaction
    it spares the BEGIN and COMMIT round trips of the agents' hottest path. Inside a caller's transaction (and
    on SQLite) a savepoint keeps a failure from breaking the caller's transaction.
    """
    sql = _sql()
    if connection.vendor == "postgresql":
        if connection.in_atomic_block:
            with transaction.atomic():
                return int(fetch(sql.insert_both, key_row + row)[0][0])
        return int(fetch(sql.insert_both, key_row + row)[0][0])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql.insert_key, _sqlite_rows([key_row], _KEY_TIMES)[0])
        cursor.execute(sql.insert_decision, _sqlite_rows([row], _DECISION_TIMES)[0])
        return int(cursor.lastrowid)


def decision_log(
    *, raw: object, now: datetime, acting_agent: Agent | None = None, seen: Mapping[str, Any] | None = None
) -> tuple[Status, Decision]:
    """Log one entry. ``created`` when new, ``duplicate`` when the same id came with the same content;
    raises ``EntryConflict`` for the same id with other content and ``InvalidEntry`` for bad input. ``seen``: the
    shared-cache values the request read with its agent key (``people.authentication.seen_with_key``)."""
    entry = entry_parse(raw, now=now)
    agent = _agent_for(entry, acting_agent)
    ctx = _AgentContext.load(agent, seen)
    threshold_name = ctx.check(entry)
    row = ctx.row(entry, threshold_name=threshold_name, now=now)
    try:
        seq = _insert(_key_row(entry, agent.pk), row)
    except IntegrityError:
        return _existing(entry, agent)
    if entry.human_response is not None:
        last_answers_changed([entry.human_response.responder_id])
    logger.debug("decision.logged", extra={"entry_id": entry.id, "agent_id": agent.agent_id})
    return "created", ctx.decision(entry, row, seq=seq)


@dataclass
class BatchResult:
    id: str | None
    status: Status
    errors: dict[str, str] | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "status": self.status}
        if self.errors:
            out["errors"] = self.errors
        return out


def _error(exc: DomainError) -> dict[str, str]:
    return {exc.field or "entry": exc.message}


def _known_hashes(given: list[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """{(agent pk, entry id): stored content hash} of those of ``given`` already in the registry: one query per
    agent (a batch has one), the ids as one array parameter on PostgreSQL."""
    by_agent: dict[int, list[str]] = {}
    for agent_pk, entry_id in given:
        by_agent.setdefault(agent_pk, []).append(entry_id)
    known: dict[tuple[int, str], str] = {}
    with connection.cursor() as cursor:
        for agent_pk, entry_ids in by_agent.items():
            if connection.vendor == "postgresql":
                found = fetch(_sql().known, [agent_pk, entry_ids])
            else:
                found = []
                table = connection.ops.quote_name(DecisionKey._meta.db_table)
                for at in range(0, len(entry_ids), 500):  # SQLite's limit on parameters, with room
                    chunk = entry_ids[at : at + 500]
                    cursor.execute(
                        f"SELECT entry_id, content_hash FROM {table} "
                        f"WHERE agent_id = %s AND entry_id IN ({', '.join(['%s'] * len(chunk))})",
                        [agent_pk, *chunk],
                    )
                    found += cursor.fetchall()
            known.update({(agent_pk, entry_id): content_hash for entry_id, content_hash in found})
    return known


class _JsonTextBinaryDumper(psycopg.adapt.Dumper):
    """A jsonb value in COPY's binary format from the JSON text ``_AgentContext.row`` made: the format's version
    byte, then the text (psycopg's own jsonb dumper would encode the text again, as a JSON string)."""

    format = psycopg.pq.Format.BINARY
    oid = psycopg.postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


@functools.cache
def _copy_types(table: str, columns: tuple[str, ...]) -> list[int]:
    """The type of each of ``columns`` for binary COPY (type ids are fixed across databases for built-in types):
    a ``varchar`` is written as ``text``, the same bytes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            [table],
        )
        found = dict(cursor.fetchall())
    varchar, text = psycopg.postgres.types["varchar"].oid, psycopg.postgres.types["text"].oid
    return [text if found[c] == varchar else int(found[c]) for c in columns]


def _copy(sql: str, rows: list[tuple[Any, ...]], types: list[int]) -> None:
    """Insert flat ``rows`` with PostgreSQL's COPY (``sql`` names the columns, of ``types``), several times faster
    than a multi-row INSERT. In binary format: a datetime is written in a thirtieth of the time its text takes (three an
    entry were a tenth of a batch's time), a float in a fifth, and text needs no escaping. A unique violation
    surfaces as Django's ``IntegrityError``, as from an INSERT."""
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.cursor.adapters.register_dumper(None, _JsonTextBinaryDumper)
        with cursor.cursor.copy(sql) as copy:
            copy.set_types(types)
            write = copy.write_row
            for row in rows:
                write(row)


# The weekly partitions a batch's decisions are written to by name (auditlog.partitions.partitions_taking_writes),
# read again every few minutes: weeks are made days ahead, and a row whose week is not in it goes through the
# decision table, which routes it. (time read, names)
_direct: tuple[float, frozenset[str]] = (-math.inf, frozenset())
DIRECT_REREAD_SECONDS = 300.0


def _direct_partitions() -> frozenset[str]:
    global _direct
    read_at, names = _direct
    if time.monotonic() - read_at > DIRECT_REREAD_SECONDS:
        names = partitions_taking_writes()
        _direct = (time.monotonic(), names)
    return names


@functools.cache
def _copy_decisions_into(table: str) -> str:
    columns = ", ".join(connection.ops.quote_name(c) for c in DECISION_COLUMNS)
    return f"COPY {connection.ops.quote_name(table)} ({columns}) FROM STDIN (FORMAT BINARY)"


def _by_table(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    """``rows`` by the table they are written to: their week's partition when it takes rows by name, else the
    decision table. PostgreSQL writes a COPY into a partition many rows at a time, and one into the partitioned
    table row by row (its references trigger has a transition table): a fifth of a batch's database time."""
    direct = _direct_partitions()
    if not direct:
        return {Decision._meta.db_table: rows}
    by_day: dict[date, str] = {}
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        moment = row[_TIMESTAMP_AT]
        table = by_day.get(moment.date())
        if table is None:
            name = partition_name(week_of(moment))
            table = by_day[moment.date()] = name if name in direct else Decision._meta.db_table
        tables.setdefault(table, []).append(row)
    return tables


def _store(fresh: list[tuple[int, EntryInput, tuple[Any, ...]]]) -> None:
    """Write the registry rows and the decisions of one batch (inside the caller's transaction), as flat rows:
    COPY on PostgreSQL, one ``executemany`` per table on SQLite."""
    keys = [_key_row(e, row[_AGENT_AT]) for _, e, row in fresh]
    rows = [row for _, _e, row in fresh]
    if not rows:
        return
    sql = _sql()
    if connection.vendor == "postgresql":
        _copy(sql.copy_keys, keys, _copy_types(DecisionKey._meta.db_table, KEY_COLUMNS))
        types = _copy_types(Decision._meta.db_table, DECISION_COLUMNS)
        for table, part in _by_table(rows).items():
            _copy(_copy_decisions_into(table), part, types)
    else:
        with connection.cursor() as cursor:
            cursor.executemany(sql.insert_key, _sqlite_rows(keys, _KEY_TIMES))
            cursor.executemany(sql.insert_decision, _sqlite_rows(rows, _DECISION_TIMES))


def decision_log_batch(
    *, entries: list[object], now: datetime, acting_agent: Agent | None = None, seen: Mapping[str, Any] | None = None
) -> list[BatchResult]:
    """Log many entries: valid ones are stored even when others are invalid; one result per entry, in order.
    ``seen``: as for ``decision_log``."""
    results: list[BatchResult] = []
    contexts: dict[str, _AgentContext] = {}
    pending: list[tuple[int, EntryInput, tuple[Any, ...]]] = []
    in_batch: dict[tuple[int, str], str] = {}  # ids are unique per agent: keyed by (agent pk, entry id)
    agents: dict[str, Agent] = {}
    for raw in entries:
        try:
            entry = entry_parse(raw, now=now)
            agent = _agent_for(entry, acting_agent, agents)
            ctx = contexts.get(agent.agent_id) or contexts.setdefault(agent.agent_id, _AgentContext.load(agent, seen))
            threshold_name = ctx.check(entry)
            row = ctx.row(entry, threshold_name=threshold_name, now=now)
        except DomainError as exc:
            raw_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
            results.append(BatchResult(raw_id, "invalid", _error(exc)))
            continue
        scoped = (row[_AGENT_AT], entry.id)
        if scoped in in_batch:
            same = in_batch[scoped] == entry.content_hash
            results.append(
                BatchResult(
                    entry.id,
                    "duplicate" if same else "conflict",
                    None if same else {"id": "repeated in this batch with other content"},
                )
            )
            continue
        in_batch[scoped] = entry.content_hash
        results.append(BatchResult(entry.id, "created"))
        pending.append((len(results) - 1, entry, row))

    # The usual batch holds new ids only, and the registry's unique constraint refuses any other: the batch is
    # written as it is, and only when the registry refuses one of its ids are they looked up there.
    fresh = pending
    if not _store_batch(fresh):
        # Ids the server made are new by construction; only the given ones can be in the registry already.
        known = _known_hashes([(row[_AGENT_AT], e.id) for _, e, row in pending if e.id_given])
        fresh = []
        for index, entry, row in pending:
            hash_known = known.get((row[_AGENT_AT], entry.id))
            if hash_known is not None:
                same = content_hash_matches(entry, hash_known)
                results[index] = BatchResult(
                    entry.id,
                    "duplicate" if same else "conflict",
                    None if same else {"id": "exists already with other content"},
                )
            else:
                fresh.append((index, entry, row))
        if not _store_batch(fresh):
            # Another request stored some of these ids meanwhile: settle each one on its own.
            for index, entry, _row in fresh:
                try:
                    status, _ = decision_log(raw=entries[index], now=now, acting_agent=acting_agent)
                    results[index] = BatchResult(entry.id, status)
                except DomainError as exc:
                    status = "conflict" if exc.status_code == 409 else "invalid"
                    results[index] = BatchResult(entry.id, status, _error(exc))
    logger.info("decision.batch_logged", extra={"entries": len(entries), "stored": len(fresh)})
    return results


def _store_batch(fresh: list[tuple[int, EntryInput, tuple[Any, ...]]]) -> bool:
    """Store ``fresh`` all together or not at all; False when the registry refused one of its ids.

    A write into a partition by name that PostgreSQL refuses as a statement (the week was dropped since this process
    read the partitions, or the role may not write to it: ``ProgrammingError``) is tried again through the decision
    table, which routes each row, and the process writes through it until it reads the partitions again. Any other
    failure (the connection lost) is the request's, and raised."""
    global _direct
    try:
        with transaction.atomic():
            _store(fresh)
            last_answers_changed(e.human_response.responder_id for _, e, _row in fresh if e.human_response)
    except IntegrityError:
        return False
    except ProgrammingError as exc:
        if not _direct[1]:
            raise
        logger.warning("decision.partition_write_failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        _direct = (time.monotonic(), frozenset())
        return _store_batch(fresh)
    return True


class _Answerable(NamedTuple):
    """A decision as ``response_record_bulk`` checks it."""

    seq: int
    entry_id: str
    timestamp: datetime
    response_action: str | None
    agent_id: str
    actions: list[str]


def _checked_response(
    decision: Decision | _Answerable, raw: object, *, responder_id: str, now: datetime, name: str
) -> ResponseInput:
    """A response to ``decision`` parsed and checked against it: its agent's actions and its time."""
    response = response_parse(raw, now=now, name=name)
    actions = decision.actions if isinstance(decision, _Answerable) else decision.agent.actions
    if response.action == "modify" and response.modified_action not in actions:
        raise InvalidEntry(f"modifiedAction must be one of {', '.join(actions)}", field="modifiedAction")
    if response.responded_at < decision.timestamp:
        raise InvalidEntry("respondedAt is before the decision's timestamp", field="respondedAt")
    return ResponseInput(
        action=response.action,
        responded_at=response.responded_at,
        responder_id=responder_id,
        modified_action=response.modified_action,
        note=response.note,
    )


def response_record(
    *,
    entry_id: str,
    agent_id: str | None = None,
    raw: object,
    responder_id: str,
    now: datetime,
    source: str = "api",
    field_prefix: str = "response",
    amends: bool = False,
    actor: Any = None,
) -> Decision:
    """Record the human response to a decision. Without ``amends`` it is the first one: a second raises
    ``AlreadyResponded`` and the first stands. With ``amends`` it replaces the current label (see
    ``response_amend``); ``actor`` is the user, for the rule of who may amend.

    ``agent_id`` says whose id ``entry_id`` is; it may be left out while only one agent uses that id
    (``decision_key_get``). ``raw`` is ``{"action", "modifiedAction"?, "note"?, "respondedAt"?}``;
    ``timeToRespond`` is computed here.
    Errors name fields as ``<field_prefix>.action``; "" names them as the keys of ``raw`` (the API's body).
    """
    decision = decision_get(entry_id=entry_id, agent_id=agent_id)
    if amends:
        return response_amend(
            decision=decision, raw=raw, actor=actor, now=now, source=source, field_prefix=field_prefix
        )
    response = _checked_response(decision, raw, responder_id=responder_id, now=now, name=field_prefix)
    _apply_response(decision, response, source=source)
    # One conditional UPDATE: whoever writes first wins, with no lock held across the request.
    written = Decision.objects.filter(
        seq=decision.seq, timestamp=decision.timestamp, response_action__isnull=True
    ).update(
        response_action=decision.response_action,
        responded_at=decision.responded_at,
        responder_id=decision.responder_id,
        modified_action=decision.modified_action,
        response_note=decision.response_note,
        time_to_respond=decision.time_to_respond,
        response_source=source,
        claimed_by=None,
        claimed_until=None,
    )
    if not written:
        raise AlreadyResponded(f"decision {entry_id!r} has a response already; the first one stands", field="id")
    last_answers_changed([decision.responder_id])
    logger.info("decision.responded", extra={"entry_id": entry_id, "action": response.action, "by": responder_id})
    return decision


def _revision(decision: Decision, *, number: int, recorded_at: datetime) -> ResponseRevision:
    return ResponseRevision(
        entry_id=decision.entry_id,
        agent_id=decision.agent_id,
        decision_timestamp=decision.timestamp,
        number=number,
        action=str(decision.response_action),
        modified_action=decision.modified_action,
        note=decision.response_note,
        responder_id=str(decision.responder_id or ""),
        responded_at=decision.responded_at or recorded_at,
        time_to_respond=decision.time_to_respond,
        source=decision.response_source,
        recorded_at=recorded_at,
    )


def response_amend(
    *, decision: Decision, raw: object, actor: Any, now: datetime, source: str = "api", field_prefix: str = ""
) -> Decision:
    """Amend the label of an answered decision: its author within ``AMEND_WINDOW_HOURS`` of their answer, an
    approver at any time. Nothing is overwritten: the answer being replaced and the amendment both stay in the
    decision's ``ResponseRevision`` history, and the amendment becomes the label everyone reads from now on
    (a tuner run already done keeps the output it stored).

    The write is conditional on the label not having changed since it was read, so of two amendments at once
    one wins and the other is told to look again.
    """
    from people.roles import is_approver

    username = str(getattr(actor, "get_username", lambda: "")() or "")
    entry_id = decision.entry_id
    if decision.response_action is None:
        raise InvalidEntry(f"decision {entry_id!r} has no response to amend; send it without amends", field="amends")
    window = timedelta(hours=int(rule("AMEND_WINDOW_HOURS")))
    own = bool(username) and username == decision.responder_id
    if not is_approver(actor):
        if not own:
            raise Forbidden(
                f"{decision.responder_id} answered {entry_id}; only they (within {window.total_seconds() / 3600:g} h) "
                "or an approver may amend it",
                field="amends",
            )
        answered = decision.responded_at or now
        if now - answered > window:
            raise Forbidden(
                f"your answer to {entry_id} is older than {window.total_seconds() / 3600:g} h; ask an approver to "
                "amend it",
                field="amends",
            )
    response = _checked_response(decision, raw, responder_id=username, now=now, name=field_prefix)
    before = (decision.response_action, decision.responded_at, decision.responder_id)
    with transaction.atomic():
        history = ResponseRevision.objects.filter(agent_id=decision.agent_id, entry_id=entry_id)
        last = history.order_by("-number").values_list("number", flat=True).first()
        revisions = []
        if last is None:
            revisions.append(_revision(decision, number=1, recorded_at=now))  # the original answer, kept
            last = 1
        _apply_response(decision, response, source=source)
        revisions.append(_revision(decision, number=last + 1, recorded_at=now))
        written = Decision.objects.filter(
            seq=decision.seq,
            timestamp=decision.timestamp,
            response_action=before[0],
            responded_at=before[1],
            responder_id=before[2],
        ).update(
            response_action=decision.response_action,
            responded_at=decision.responded_at,
            responder_id=decision.responder_id,
            modified_action=decision.modified_action,
            response_note=decision.response_note,
            time_to_respond=decision.time_to_respond,
            response_source=source,
        )
        if not written:
            raise AlreadyResponded(f"the response to {entry_id!r} changed meanwhile; read it again", field="id")
        try:
            with transaction.atomic():
                ResponseRevision.objects.bulk_create(revisions)
        except IntegrityError:
            raise AlreadyResponded(
                f"the response to {entry_id!r} changed meanwhile; read it again", field="id"
            ) from None
    last_answers_changed([before[2], decision.responder_id])  # whose answer it was, and whose it is now
    logger.info(
        "decision.response_amended",
        extra={"entry_id": entry_id, "action": response.action, "by": username, "was": before[0]},
    )
    return decision


def response_history(decision: Decision) -> list[ResponseRevision]:
    """Every answer to the decision, oldest first; a never-amended answer is its own one-item history."""
    rows = list(ResponseRevision.objects.filter(agent_id=decision.agent_id, entry_id=decision.entry_id))
    if rows or decision.response_action is None:
        return rows
    return [_revision(decision, number=1, recorded_at=decision.responded_at or decision.received_at)]


@dataclass(frozen=True)
class BulkResponse:
    entry_id: str
    raw: dict[str, object]
    responder_id: str
    agent_id: str | None = None  # whose id it is; may be left out while only one agent uses it


def response_record_bulk(*, items: list[BulkResponse], now: datetime, source: str = "import") -> int:
    """Record many first responses at once (simulations, replays, imports); returns how many were written.

    Each one is parsed and checked as in ``response_record``; a decision that is unknown, already answered or
    given a bad response is skipped rather than failing the rest, and so is an id that several agents use when
    the item does not say whose it is. The write is the same conditional UPDATE
    (``response_action IS NULL``), made for a few hundred rows per statement, so a response recorded meanwhile
    by a reviewer stands.
    """
    by_id: dict[str, list[_Answerable]] = {}
    # The few columns the checks need, not the decisions and their agents as models: the simulation records
    # its reviewers' answers this way every hour, and building 25 wide models cost more than their read.
    found_rows = (
        Decision.objects.filter(entry_id__in=[i.entry_id for i in items])
        .order_by()
        .values_list("seq", "entry_id", "timestamp", "response_action", "agent__agent_id", "agent__actions")
    )
    for row in found_rows:
        d = _Answerable(*row)
        by_id.setdefault(d.entry_id, []).append(d)
    ready: list[tuple[_Answerable, dict[str, Any]]] = []
    answered: set[int] = set()
    for item in items:
        found = by_id.get(item.entry_id, [])
        if item.agent_id is not None:
            found = [d for d in found if d.agent_id == item.agent_id]
        if len(found) != 1 or found[0].seq in answered:
            continue
        decision = found[0]
        answered.add(decision.seq)
        if decision.response_action is not None:
            continue
        try:
            response = _checked_response(decision, item.raw, responder_id=item.responder_id, now=now, name="response")
        except DomainError:
            continue
        values = _response_values(response, timestamp=decision.timestamp, source=source)
        ready.append((decision, {**values, "claimed_by": None, "claimed_until": None}))
    fields = [
        "response_action",
        "responded_at",
        "responder_id",
        "modified_action",
        "response_note",
        "time_to_respond",
        "response_source",
        "claimed_by",
        "claimed_until",
    ]
    from django.db import connections

    conn = connections[Decision.objects.db]
    quote = conn.ops.quote_name
    by_name = {f.name: f for f in Decision._meta.concrete_fields}
    column = {name: quote(str(f.column)) for name, f in by_name.items()}
    sets = ", ".join(f"{column[f]} = %s" for f in fields)
    # The conditional write-once UPDATE of ``response_record``, sent as one executemany.
    sql = (
        f"UPDATE {quote(Decision._meta.db_table)} SET {sets} WHERE {column['seq']} = %s "
        f"AND {column['timestamp']} = %s AND {column['response_action']} IS NULL"
    )
    params = [
        [by_name[f].get_db_prep_save(values[f], conn) for f in fields]
        + [by_name["seq"].get_db_prep_save(d.seq, conn), by_name["timestamp"].get_db_prep_save(d.timestamp, conn)]
        for d, values in ready
    ]
    written = 0
    if params:
        with transaction.atomic(), conn.cursor() as cursor:
            cursor.executemany(sql, params)
            written = max(cursor.rowcount, 0)
            last_answers_changed(values["responder_id"] for _d, values in ready)
    logger.info("decision.responses_bulk", extra={"items": len(items), "written": written})
    return written
