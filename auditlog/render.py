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
    response = response_render(d)
    if response is not None:
        entry["humanResponse"] = response
    return entry
