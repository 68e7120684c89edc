"""Writes to the decision log: logging decisions (one or a batch) and recording a human response once."""

import bisect
import json
import logging
import operator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.db import IntegrityError, connection, models, transaction

from auditlog.entry import EntryInput, ResponseInput, entry_parse, response_parse, sample_draw
from auditlog.exceptions import AlreadyResponded, AmbiguousEntryId, DecisionNotFound, EntryConflict, InvalidEntry
from auditlog.models import Decision, DecisionKey, ResponseRevision, ReviewReason
from loopsite.exceptions import DomainError, Forbidden
from loopsite.rules import rule
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


@dataclass
class _AgentContext:
    """What checking and storing an agent's entries needs, loaded once per request or batch."""

    agent: Agent
    live: LiveConfig
    _history: list[_Version] | None = None

    @classmethod
    def load(cls, agent: Agent) -> "_AgentContext":
        # The live config carries the thresholds' gated actions, so a logged decision costs no query for them.
        return cls(agent=agent, live=config_get_live(agent=agent))

    def history(self) -> list[_Version]:
        """Every version of the agent, oldest first; read once, and only for entries older than the live one."""
        if self._history is None:
            rows = ConfigVersion.objects.filter(agent_id=self.agent.pk).order_by("number")
            self._history = [
                _Version(v.pk, v.number, v.activated_at, {k: float(x) for k, x in v.values.items()}) for v in rows
            ]
        return self._history

    def version_for(self, entry: EntryInput, *, threshold_name: str) -> _Version:
        """The version the decision was made under (contract, "Decision"): the one the agent names in
        ``configVersion``, checked against its ``thresholdUsed``; else the one live at the decision's timestamp,
        so an upload that was buffered or retried is not blamed on a version that went live after it."""
        live = self.live
        if entry.config_version is None:
            if entry.timestamp >= live.activated_at:
                return _Version(live.version_pk, live.version, live.activated_at, live.thresholds)
            history = self.history()
            at = bisect.bisect_right([v.activated_at for v in history], entry.timestamp)
            return history[max(0, at - 1)]
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
        gating = [name for name, action in self.live.gates.items() if action == entry.action]
        if gating:
            exact = [n for n in gating if self.live.thresholds.get(n) == entry.threshold_used]
            return (exact or sorted(gating))[0]
        # The weakest action: the lowest threshold is the one it fell below.
        return min(self.live.thresholds, key=lambda n: (self.live.thresholds[n], n))

    def check(self, entry: EntryInput) -> str:
        actions = list(self.agent.actions)
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
        response = entry.human_response
        if response is not None and response.action == "modify" and response.modified_action not in actions:
            raise InvalidEntry(
                f"humanResponse.modifiedAction must be one of {', '.join(actions)}",
                field="humanResponse.modifiedAction",
            )
        return self.threshold_for(entry)

    def values(self, entry: EntryInput, *, threshold_name: str, now: datetime) -> dict[str, Any]:
        """The decision row as {attribute name: value}: what ``build`` makes a model of and COPY writes."""
        version = self.version_for(entry, threshold_name=threshold_name)
        fired = entry.action != self.agent.weakest_action
        sampled = not fired and sample_draw(entry.id) < self.agent.review_sample_rate
        reason = ReviewReason.FIRED if fired else ReviewReason.SAMPLED if sampled else ReviewReason.NONE
        # Stored and shown in UTC, so the entry a POST returns reads the same as the one read back later.
        timestamp = entry.timestamp.astimezone(UTC)
        row: dict[str, Any] = {
            "entry_id": entry.id,
            "agent_id": self.agent.pk,
            "session_id": entry.session_id,
            "timestamp": timestamp,
            "received_at": now,
            "action": entry.action,
            "confidence": entry.confidence,
            "threshold_used": entry.threshold_used,
            "threshold_name": threshold_name,
            "reasoning": entry.reasoning,
            "input_hash": entry.input_hash,
            "features": entry.features,
            "matched_rules": entry.matched_rules,
            "config_version_id": version.pk,
            "review_reason": reason.value,
            "queued": fired or sampled,
            "content_hash": entry.content_hash,
            "claimed_by": None,
            "claimed_until": None,
        }
        if entry.human_response is not None:
            row.update(_response_values(entry.human_response, timestamp=timestamp, source="import"))
        else:
            row.update(_NO_RESPONSE)
        return row

    def build(self, entry: EntryInput, *, threshold_name: str, now: datetime) -> Decision:
        row = self.values(entry, threshold_name=threshold_name, now=now)
        version = self.version_for(entry, threshold_name=threshold_name)
        del row["agent_id"], row["config_version_id"]
        # Only its id, agent and number loaded (the rest load on access): rendering a just-logged decision
        # costs no query.
        model = ConfigVersion.from_db(None, ["id", "agent_id", "number"], [version.pk, self.agent.pk, version.number])
        return Decision(agent=self.agent, config_version=model, **row)


_NO_RESPONSE: dict[str, Any] = {
    "response_action": None,
    "responded_at": None,
    "responder_id": None,
    "modified_action": None,
    "response_note": None,
    "time_to_respond": None,
    "response_source": None,
}


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


def _agent_for(entry: EntryInput, acting_agent: Agent | None) -> Agent:
    if acting_agent is not None:
        if entry.agent_id != acting_agent.agent_id:
            if not Agent.objects.filter(agent_id=entry.agent_id).exists():
                raise InvalidEntry(f"agentId {entry.agent_id!r} is not a registered agent", field="agentId")
            raise Forbidden(
                f"agentId {entry.agent_id!r} is not this key's agent ({acting_agent.agent_id})",
                field="agentId",
            )
        return acting_agent
    try:
        return Agent.objects.get(agent_id=entry.agent_id)
    except Agent.DoesNotExist:
        raise InvalidEntry(f"agentId {entry.agent_id!r} is not a registered agent", field="agentId") from None


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
    if key.content_hash != entry.content_hash:
        raise EntryConflict(f"id {entry.id!r} exists already with other content", field="id")
    return "duplicate", decision_get(entry_id=entry.id, agent=agent)


def _insert_one_statement(key: DecisionKey, decision: Decision) -> None:
    """Write the registry row and the decision in one PostgreSQL statement (a data-modifying CTE).

    On its own, outside any transaction, one statement is atomic: both rows or neither, and a taken id fails
    it with an ``IntegrityError``. It spares the BEGIN and COMMIT round trips of the agents' hottest path.
    """
    quote = connection.ops.quote_name

    def part(obj: models.Model) -> tuple[str, str, list[Any]]:
        fields = [f for f in obj._meta.concrete_fields if not (f.primary_key and isinstance(f, models.AutoField))]
        columns = ", ".join(quote(str(f.column)) for f in fields)
        return (
            columns,
            ", ".join(["%s"] * len(fields)),
            [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields],
        )

    key_columns, key_marks, key_params = part(key)
    columns, marks, params = part(decision)
    sql = (
        f"WITH registered AS (INSERT INTO {quote(DecisionKey._meta.db_table)} ({key_columns}) VALUES ({key_marks})) "
        f"INSERT INTO {quote(Decision._meta.db_table)} ({columns}) VALUES ({marks}) RETURNING {quote('seq')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, key_params + params)
        decision.seq = cursor.fetchone()[0]
    decision._state.adding = False
    decision._state.db = connection.alias


def decision_log(*, raw: object, now: datetime, acting_agent: Agent | None = None) -> tuple[Status, Decision]:
    """Log one entry. ``created`` when new, ``duplicate`` when the same id came with the same content;
    raises ``EntryConflict`` for the same id with other content and ``InvalidEntry`` for bad input."""
    entry = entry_parse(raw, now=now)
    agent = _agent_for(entry, acting_agent)
    ctx = _AgentContext.load(agent)
    threshold_name = ctx.check(entry)
    decision = ctx.build(entry, threshold_name=threshold_name, now=now)
    key = DecisionKey(entry_id=entry.id, content_hash=entry.content_hash, agent_id=agent.pk, timestamp=entry.timestamp)
    try:
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            _insert_one_statement(key, decision)
        else:
            with transaction.atomic():
                key.save(force_insert=True)
                decision.save(force_insert=True)
    except IntegrityError:
        return _existing(entry, agent)
    logger.debug("decision.logged", extra={"entry_id": entry.id, "agent_id": agent.agent_id})
    return "created", decision


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
    """{(agent pk, entry id): content hash} of those of ``given`` already in the registry."""
    by_agent: dict[int, list[str]] = {}
    for agent_pk, entry_id in given:
        by_agent.setdefault(agent_pk, []).append(entry_id)
    known: dict[tuple[int, str], str] = {}
    for agent_pk, entry_ids in by_agent.items():
        rows = DecisionKey.objects.filter(agent_id=agent_pk, entry_id__in=entry_ids)
        known.update({(agent_pk, e): content_hash for e, content_hash in rows.values_list("entry_id", "content_hash")})
    return known


def _copy(model: type[models.Model], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` ({attribute name: value}) with PostgreSQL's COPY, several times faster than a multi-row
    INSERT and with no model instance made per row.

    Every concrete column but an auto primary key is written (absent ones as NULL); JSON columns as JSON text.
    A unique violation surfaces as Django's ``IntegrityError``, as from ``bulk_create``.
    """
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, models.AutoField))]
    attnames = [f.attname for f in fields]
    json_at = [i for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    quote = connection.ops.quote_name
    sql = f"COPY {quote(model._meta.db_table)} ({', '.join(quote(str(f.column)) for f in fields)}) FROM STDIN"
    dumps = json.dumps
    pick = operator.itemgetter(*attnames)
    defaults = {f.attname: f.get_default() if f.has_default() else None for f in fields}
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        for values in rows:
            # Rows normally carry every column; one made before a column was added gets its default.
            row = list(pick(values) if len(values) == len(attnames) else pick({**defaults, **values}))
            for i in json_at:
                row[i] = dumps(row[i])
            copy.write_row(row)


def _store(fresh: list[tuple[int, EntryInput, dict[str, Any]]]) -> None:
    """Write the registry rows and the decisions of one batch (inside the caller's transaction)."""
    keys = [
        {"entry_id": e.id, "content_hash": e.content_hash, "agent_id": row["agent_id"], "timestamp": e.timestamp}
        for _, e, row in fresh
    ]
    rows = [row for _, _e, row in fresh]
    if connection.vendor == "postgresql":
        _copy(DecisionKey, keys)
        _copy(Decision, rows)
    else:
        DecisionKey.objects.bulk_create([DecisionKey(**k) for k in keys])
        Decision.objects.bulk_create([Decision(**row) for row in rows])


def decision_log_batch(*, entries: list[object], now: datetime, acting_agent: Agent | None = None) -> list[BatchResult]:
    """Log many entries: valid ones are stored even when others are invalid; one result per entry, in order."""
    results: list[BatchResult] = []
    contexts: dict[str, _AgentContext] = {}
    pending: list[tuple[int, EntryInput, dict[str, Any]]] = []
    seen: dict[tuple[int, str], str] = {}  # ids are unique per agent: keyed by (agent pk, entry id)
    for raw in entries:
        raw_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        try:
            entry = entry_parse(raw, now=now)
            agent = _agent_for(entry, acting_agent)
            ctx = contexts.get(agent.agent_id) or contexts.setdefault(agent.agent_id, _AgentContext.load(agent))
            threshold_name = ctx.check(entry)
            row = ctx.values(entry, threshold_name=threshold_name, now=now)
        except DomainError as exc:
            results.append(BatchResult(raw_id, "invalid", _error(exc)))
            continue
        scoped = (agent.pk, entry.id)
        if scoped in seen:
            same = seen[scoped] == entry.content_hash
            results.append(
                BatchResult(
                    entry.id,
                    "duplicate" if same else "conflict",
                    None if same else {"id": "repeated in this batch with other content"},
                )
            )
            continue
        seen[scoped] = entry.content_hash
        results.append(BatchResult(entry.id, "created"))
        pending.append((len(results) - 1, entry, row))

    # Ids the server made are new by construction; only the given ones can be in the registry already.
    known = _known_hashes([(row["agent_id"], e.id) for _, e, row in pending if e.id_given])
    fresh = []
    for index, entry, row in pending:
        hash_known = known.get((row["agent_id"], entry.id))
        if hash_known is not None:
            same = hash_known == entry.content_hash
            results[index] = BatchResult(
                entry.id,
                "duplicate" if same else "conflict",
                None if same else {"id": "exists already with other content"},
            )
        else:
            fresh.append((index, entry, row))
    try:
        with transaction.atomic():
            _store(fresh)
    except IntegrityError:
        # Another request stored some of these ids meanwhile: settle each one on its own.
        for index, entry, _row in fresh:
            try:
                status, _ = decision_log(raw=entries[index], now=now, acting_agent=acting_agent)
                results[index] = BatchResult(entry.id, status)
            except DomainError as exc:
                results[index] = BatchResult(entry.id, "conflict" if exc.status_code == 409 else "invalid", _error(exc))
    logger.info("decision.batch_logged", extra={"entries": len(entries), "stored": len(fresh)})
    return results


def _checked_response(decision: Decision, raw: object, *, responder_id: str, now: datetime, name: str) -> ResponseInput:
    response = response_parse(raw, now=now, name=name)
    if response.action == "modify" and response.modified_action not in decision.agent.actions:
        raise InvalidEntry(f"modifiedAction must be one of {', '.join(decision.agent.actions)}", field="modifiedAction")
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
    by_id: dict[str, list[Decision]] = {}
    for d in Decision.objects.filter(entry_id__in=[i.entry_id for i in items]).select_related("agent"):
        by_id.setdefault(d.entry_id, []).append(d)
    ready: list[Decision] = []
    answered: set[int] = set()
    for item in items:
        found = by_id.get(item.entry_id, [])
        if item.agent_id is not None:
            found = [d for d in found if d.agent.agent_id == item.agent_id]
        if len(found) != 1 or found[0].seq in answered:
            continue
        decision = found[0]
        answered.add(decision.seq)
        if decision.response_action is not None:
            continue
        try:
            parsed = response_parse(item.raw, now=now, name="response")
        except DomainError:
            continue
        if parsed.action == "modify" and parsed.modified_action not in decision.agent.actions:
            continue
        if parsed.responded_at < decision.timestamp:
            continue
        _apply_response(
            decision,
            ResponseInput(
                action=parsed.action,
                responded_at=parsed.responded_at,
                responder_id=item.responder_id,
                modified_action=parsed.modified_action,
                note=parsed.note,
            ),
            source=source,
        )
        decision.claimed_by = None
        decision.claimed_until = None
        ready.append(decision)
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
        [by_name[f].get_db_prep_save(getattr(d, by_name[f].attname), conn) for f in fields]
        + [by_name["seq"].get_db_prep_save(d.seq, conn), by_name["timestamp"].get_db_prep_save(d.timestamp, conn)]
        for d in ready
    ]
    written = 0
    if params:
        with transaction.atomic(), conn.cursor() as cursor:
            cursor.executemany(sql, params)
            written = max(cursor.rowcount, 0)
    logger.info("decision.responses_bulk", extra={"items": len(items), "written": written})
    return written
