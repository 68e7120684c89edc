"""The audit trail's hash chain: each row carries the hash of its content and of the agent's row before it.

The database refuses UPDATE, DELETE and TRUNCATE of audit rows (approvals.append_only), but the owner of the
table can switch triggers off. The chain makes what such an owner did detectable: altering a row changes its
content hash, and removing or inserting one breaks the next row's link. ``chain_verify`` walks an agent's rows in
the order they were written and reports the first broken link; ``manage.py verify_audit`` runs it.

Removing an agent's newest rows leaves a shorter chain that is still whole: compare the head hash that
``verify_audit`` prints with one recorded elsewhere (a log, a ticket) to detect that too.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

# The fields a row's hash covers, as (attribute, key in the hashed document). Foreign keys by their ids.
HASHED_FIELDS = (
    ("kind", "kind"),
    ("at", "at"),
    ("agent_id", "agent"),
    ("threshold_name", "thresholdName"),
    ("actor_id", "actor"),
    ("actor_label", "actorLabel"),
    ("before", "before"),
    ("after", "after"),
    ("proposal_id", "proposal"),
    ("run_id", "run"),
    ("config_version_id", "configVersion"),
    ("evidence_entry_ids", "evidenceEntryIds"),
    ("detail", "detail"),
    ("message", "message"),
)


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def content_document(fields: dict[str, Any]) -> bytes:
    """The bytes hashed for one row, from its field values by attribute name.

    JSON values go through a round trip first, so the hash is the same for what was written and for what the
    database gives back (tuples become lists, and so on); keys are sorted."""
    document = {key: _canonical(fields[attribute]) for attribute, key in HASHED_FIELDS}
    normalised = json.loads(json.dumps(document))
    return json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(*, prev_hash: str, fields: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(content_document(fields))
    return digest.hexdigest()


def fields_of(event: Any) -> dict[str, Any]:
    return {attribute: getattr(event, attribute) for attribute, _key in HASHED_FIELDS}


@dataclass(frozen=True)
class Break:
    """The first broken link of an agent's chain: the row at which it breaks, and what is wrong there."""

    event_id: int
    kind: str
    at: datetime
    problem: str


@dataclass(frozen=True)
class ChainReport:
    agent_id: str
    events: int
    head: str
    broken: Break | None


def chain_walk(agent_id: str, events: Iterable[Any]) -> ChainReport:
    """Check one agent's rows, given in the order they were written (by id)."""
    prev_hash = GENESIS
    prev_id: int | None = None
    count = 0
    for event in events:
        count += 1
        if event.prev_hash != prev_hash:
            where = f"the row before it (#{prev_id})" if prev_id is not None else "the start of the chain"
            problem = f"its link does not match {where}: a row was removed, inserted or altered before it"
            return ChainReport(agent_id, count, prev_hash, Break(event.pk, event.kind, event.at, problem))
        expected = row_hash(prev_hash=prev_hash, fields=fields_of(event))
        if event.hash != expected:
            problem = "its content does not match its hash: the row was altered after it was written"
            return ChainReport(agent_id, count, prev_hash, Break(event.pk, event.kind, event.at, problem))
        prev_hash, prev_id = event.hash, event.pk
    return ChainReport(agent_id, count, prev_hash, None)


def chain_verify(agent_ids: Iterable[str] | None = None) -> Iterator[ChainReport]:
    """One report per agent (all agents with audit rows, or those named), in agent id order."""
    from approvals.models import AuditEvent
    from thresholds.models import Agent

    agents = Agent.objects.order_by("agent_id")
    if agent_ids is not None:
        agents = agents.filter(agent_id__in=list(agent_ids))
    for agent in agents.only("pk", "agent_id").iterator():
        rows = AuditEvent.objects.filter(agent_id=agent.pk).order_by("id").iterator(chunk_size=2000)
        yield chain_walk(agent.agent_id, rows)
