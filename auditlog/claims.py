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

from auditlog.exceptions import AlreadyResponded
from auditlog.labels import THUMBS, binary_meaning, binary_response
from auditlog.models import Decision, DecisionKey
from auditlog.services import response_record
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


@dataclass(frozen=True)
class RespondResult:
    entry_id: str
    outcome: Outcome
    message: str
    decision: Decision | None = None


def _locate(entry_id: str) -> tuple[datetime, int] | None:
    key = DecisionKey.objects.filter(entry_id=entry_id).values_list("timestamp", flat=True).first()
    if key is None:
        return None
    seq = Decision.objects.filter(entry_id=entry_id, timestamp=key).values_list("seq", flat=True).first()
    return None if seq is None else (key, seq)


def claim_acquire(*, entry_id: str, reviewer: str, now: datetime) -> ClaimResult:
    """Claim a pending decision for ``rule("CLAIM_MINUTES")``; renewing one's own claim also succeeds."""
    where = _locate(entry_id)
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


def claim_release(*, entry_id: str, reviewer: str) -> bool:
    """Give up one's own claim (moving on without answering), so the item goes back to the others."""
    where = _locate(entry_id)
    if where is None:
        return False
    timestamp, seq = where
    released = Decision.objects.filter(seq=seq, timestamp=timestamp, claimed_by=reviewer).update(
        claimed_by=None, claimed_until=None
    )
    return bool(released)


def _raw(action: str, modified_action: str | None, note: str | None) -> dict[str, str]:
    raw: dict[str, str] = {"action": action}
    if modified_action:
        raw["modifiedAction"] = modified_action
    if note and note.strip():
        raw["note"] = note.strip()
    return raw


def thumb_meanings(entry_ids: list[str], thumb: str) -> dict[str, tuple[str, str]]:
    """{entry id: (the action a thumb records for it, the words saying so)}; empty for an unknown thumb."""
    if thumb not in THUMBS:
        return {}
    rows = Decision.objects.filter(entry_id__in=entry_ids).values_list("entry_id", "action", "agent__actions")
    return {
        entry_id: (
            binary_response(thumb, taken_action=taken, actions=actions),
            binary_meaning(thumb, taken_action=taken, actions=actions),
        )
        for entry_id, taken, actions in rows
        if taken in actions
    }


def amended_response_record(
    *,
    entry_id: str,
    reviewer: str,
    action: str,
    now: datetime,
    modified_action: str | None = None,
    note: str | None = None,
    actor: Any = None,
) -> RespondResult:
    """Change an answer from the queue page (the undo key): through ``response_amend``, no claim needed."""
    try:
        decision = response_record(
            entry_id=entry_id,
            raw=_raw(action, modified_action, note),
            responder_id=reviewer,
            now=now,
            source="web",
            amends=True,
            actor=actor,
        )
    except DomainError as exc:
        return RespondResult(entry_id, "invalid", f"{entry_id} was not changed: {exc.message}")
    label = f"{action} → {modified_action}" if action == "modify" and modified_action else action
    return RespondResult(entry_id, "recorded", f"{entry_id}: changed to {label}", decision)


def claimed_response_record(
    *,
    entry_id: str,
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
    claim = claim_acquire(entry_id=entry_id, reviewer=reviewer, now=now)
    if not claim.won:
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
        decision = response_record(
            entry_id=entry_id, raw=_raw(action, modified_action, note), responder_id=reviewer, now=now, source="web"
        )
    except AlreadyResponded:
        return RespondResult(entry_id, "already_responded", f"{entry_id} was answered meanwhile; that response stands.")
    except DomainError as exc:
        claim_release(entry_id=entry_id, reviewer=reviewer)
        return RespondResult(entry_id, "invalid", exc.message)
    label = f"{action} → {modified_action}" if action == "modify" and modified_action else action
    return RespondResult(entry_id, "recorded", f"{entry_id}: {label}", decision)
