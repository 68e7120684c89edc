"""Claims on queued decisions, so two reviewers do not work the same item, and responding from the queue page.

A claim is one conditional UPDATE (``claimed_by``/``claimed_until`` on the decision row): it only succeeds when
the item is still pending and unclaimed, its claim has run out, or the reviewer holds it already. Whoever's
UPDATE matches the row wins; no lock is held across requests.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.db.models import Q

from auditlog.exceptions import AlreadyResponded, AmbiguousEntryId, DecisionNotFound
from auditlog.labels import THUMBS, binary_meaning, binary_response
from auditlog.models import Decision
from auditlog.services import decision_key_get, response_record
from loopsite.exceptions import DomainError
from loopsite.rules import rule

logger = logging.getLogger(__name__)

Outcome = Literal["recorded", "already_responded", "claimed_by_other", "not_found", "invalid"]


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    until: datetime | None = None
    holder: str | None = None  # who holds it, when someone else does
    responded_by: str | None = None  # who answered it, when it has a response
    missing: bool = False
    problem: str | None = None  # why the item could not be told, e.g. an id several agents use


@dataclass(frozen=True)
class RespondResult:
    entry_id: str
    outcome: Outcome
    message: str
    decision: Decision | None = None


def _locate(entry_id: str, agent_id: str | None) -> tuple[datetime, int] | None:
    """(timestamp, seq) of the agent's decision; None when there is none. Ids are unique per agent: without
    ``agent_id``, an id several agents use raises ``AmbiguousEntryId``."""
    try:
        key = decision_key_get(entry_id=entry_id, agent_id=agent_id)
    except DecisionNotFound:
        return None
    seq = (
        Decision.objects.filter(agent_id=key.agent_id, entry_id=entry_id, timestamp=key.timestamp)
        .values_list("seq", flat=True)
        .first()
    )
    return None if seq is None else (key.timestamp, seq)


def claim_acquire(*, entry_id: str, agent_id: str | None = None, reviewer: str, now: datetime) -> ClaimResult:
    """Claim a pending decision (one agent's ``entry_id``) for ``rule("CLAIM_MINUTES")``; renewing one's own
    claim also succeeds."""
    try:
        where = _locate(entry_id, agent_id)
    except AmbiguousEntryId as exc:
        return ClaimResult(won=False, problem=exc.message)
    if where is None:
        return ClaimResult(won=False, missing=True)
    timestamp, seq = where
    until = now + timedelta(minutes=float(rule("CLAIM_MINUTES")))
    won = (
        Decision.objects.filter(seq=seq, timestamp=timestamp, queued=True, response_action__isnull=True)
        .filter(Q(claimed_by__isnull=True) | Q(claimed_until__lte=now) | Q(claimed_by=reviewer))
        .update(claimed_by=reviewer, claimed_until=until)
    )
    if won:
        logger.debug("decision.claimed", extra={"entry_id": entry_id, "by": reviewer})
        return ClaimResult(won=True, until=until)
    row = (
        Decision.objects.filter(seq=seq, timestamp=timestamp)
        .values("response_action", "responder_id", "claimed_by", "queued")
        .first()
    )
    if row is None or not row["queued"]:
        return ClaimResult(won=False, missing=True)
    if row["response_action"] is not None:
        return ClaimResult(won=False, responded_by=row["responder_id"])
    return ClaimResult(won=False, holder=row["claimed_by"])


def claim_release(*, entry_id: str, agent_id: str | None = None, reviewer: str) -> bool:
    """Give up one's own claim (moving on without answering), so the item goes back to the others."""
    try:
        where = _locate(entry_id, agent_id)
    except AmbiguousEntryId:
        return False
    if where is None:
        return False
    timestamp, seq = where
    released = Decision.objects.filter(seq=seq, timestamp=timestamp, claimed_by=reviewer).update(
        claimed_by=None, claimed_until=None
    )
    return bool(released)


def _record(
    entry_id: str, agent_id: str | None, *, reviewer: str, raw: dict[str, str], now: datetime, **amend: Any
) -> Decision:
    """The queue page's answers go through ``response_record``, as the page's (``web``)."""
    return response_record(
        entry_id=entry_id, agent_id=agent_id, raw=raw, responder_id=reviewer, now=now, source="web", **amend
    )


def _raw(action: str, modified_action: str | None, note: str | None) -> dict[str, str]:
    raw: dict[str, str] = {"action": action}
    if modified_action:
        raw["modifiedAction"] = modified_action
    if note and note.strip():
        raw["note"] = note.strip()
    return raw


ItemRef = tuple[str, str | None]  # (entry id, agentId or None when not given)


def thumb_meanings(refs: list[ItemRef], thumb: str) -> dict[ItemRef, tuple[str, str]]:
    """{(entry id, agentId): (the action a thumb records for it, the words saying so)}; empty for an unknown
    thumb. A ref without its agent counts only while one agent uses the id."""
    if thumb not in THUMBS:
        return {}
    rows = Decision.objects.filter(entry_id__in=[entry_id for entry_id, _ in refs]).values_list(
        "entry_id", "agent__agent_id", "action", "agent__actions"
    )
    by_id: dict[str, list[tuple[str, str, list[str]]]] = {}
    for entry_id, agent_id, taken, actions in rows:
        by_id.setdefault(entry_id, []).append((agent_id, taken, actions))
    meanings: dict[ItemRef, tuple[str, str]] = {}
    for ref in refs:
        found = [row for row in by_id.get(ref[0], []) if ref[1] is None or row[0] == ref[1]]
        if len(found) == 1 and found[0][1] in found[0][2]:
            _, taken, actions = found[0]
            meanings[ref] = (
                binary_response(thumb, taken_action=taken, actions=actions),
                binary_meaning(thumb, taken_action=taken, actions=actions),
            )
    return meanings


def amended_response_record(
    *,
    entry_id: str,
    agent_id: str | None = None,
    reviewer: str,
    action: str,
    now: datetime,
    modified_action: str | None = None,
    note: str | None = None,
    actor: Any = None,
) -> RespondResult:
    """Change an answer from the queue page (the undo key): through ``response_amend``, no claim needed."""
    raw = _raw(action, modified_action, note)
    try:
        decision = _record(entry_id, agent_id, reviewer=reviewer, raw=raw, now=now, amends=True, actor=actor)
    except DomainError as exc:
        return RespondResult(entry_id, "invalid", f"{entry_id} was not changed: {exc.message}")
    label = f"{action} → {modified_action}" if action == "modify" and modified_action else action
    return RespondResult(entry_id, "recorded", f"{entry_id}: changed to {label}", decision)


def claimed_response_record(
    *,
    entry_id: str,
    agent_id: str | None = None,
    reviewer: str,
    action: str,
    now: datetime,
    modified_action: str | None = None,
    note: str | None = None,
    actor: Any = None,
) -> RespondResult:
    """Respond from the queue page: hold (or take) the claim, then record through ``response_record``.

    Never raises for the expected refusals; the result says what happened in words a reviewer can read.
    """
    claim = claim_acquire(entry_id=entry_id, agent_id=agent_id, reviewer=reviewer, now=now)
    if not claim.won:
        if claim.problem is not None:
            return RespondResult(entry_id, "invalid", claim.problem)
        if claim.missing:
            return RespondResult(entry_id, "not_found", f"Decision {entry_id} is not in the queue.")
        if claim.responded_by is not None:
            return RespondResult(
                entry_id,
                "already_responded",
                f"{claim.responded_by} already answered {entry_id}; their response stands.",
            )
        return RespondResult(entry_id, "claimed_by_other", f"{claim.holder} is reviewing {entry_id}; skipped.")
    try:
        decision = _record(entry_id, agent_id, reviewer=reviewer, raw=_raw(action, modified_action, note), now=now)
    except AlreadyResponded:
        return RespondResult(entry_id, "already_responded", f"{entry_id} was answered meanwhile; that response stands.")
    except DomainError as exc:
        claim_release(entry_id=entry_id, agent_id=agent_id, reviewer=reviewer)
        return RespondResult(entry_id, "invalid", exc.message)
    label = f"{action} → {modified_action}" if action == "modify" and modified_action else action
    return RespondResult(entry_id, "recorded", f"{entry_id}: {label}", decision)
