"""A stored decision in the seed's ActionLogEntry shape (camelCase), as the API and pages show it."""

from typing import Any

from auditlog.models import Decision


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def response_render(d: Decision) -> dict[str, Any] | None:
    if d.response_action is None:
        return None
    response: dict[str, Any] = {
        "action": d.response_action,
        "respondedAt": _iso(d.responded_at),
        "responderId": d.responder_id,
        "timeToRespond": d.time_to_respond,
    }
    if d.modified_action is not None:
        response["modifiedAction"] = d.modified_action
    if d.response_note is not None:
        response["note"] = d.response_note
    return response


def entry_render(d: Decision, *, agent_id: str | None = None, config_version: int | None = None) -> dict[str, Any]:
    """``agent_id`` and ``config_version`` may be passed in to spare a join when rendering many rows."""
    entry: dict[str, Any] = {
        "id": d.entry_id,
        "timestamp": _iso(d.timestamp),
        "agentId": agent_id if agent_id is not None else d.agent.agent_id,
        "sessionId": d.session_id,
        "decision": {
            "action": d.action,
            "confidence": d.confidence,
            "thresholdUsed": d.threshold_used,
            "reasoning": d.reasoning,
            "thresholdName": d.threshold_name,
        },
        "context": {"inputHash": d.input_hash, "features": d.features, "matchedRules": d.matched_rules},
        "configVersion": config_version if config_version is not None else d.config_version.number,
        "queuedForReview": d.queued,
    }
    if d.shadow_action is not None:
        entry["decision"]["shadowAction"] = d.shadow_action
        entry["decision"]["shadowProposalId"] = d.shadow_proposal_id
    response = response_render(d)
    if response is not None:
        entry["humanResponse"] = response
    return entry


def revision_render(r: Any) -> dict[str, Any]:
    """One answer of a decision's ``responseHistory`` (an ``auditlog.models.ResponseRevision``)."""
    out: dict[str, Any] = {
        "revision": r.number,
        "action": r.action,
        "respondedAt": _iso(r.responded_at),
        "responderId": r.responder_id,
        "timeToRespond": r.time_to_respond,
    }
    if r.modified_action is not None:
        out["modifiedAction"] = r.modified_action
    if r.note is not None:
        out["note"] = r.note
    return out


def entry_render_with_history(d: Decision, history: list[Any]) -> dict[str, Any]:
    """The entry as ``GET /decisions/{id}`` shows it: with every answer it was given, oldest first."""
    entry = entry_render(d)
    entry["responseHistory"] = [revision_render(r) for r in history]
    return entry
