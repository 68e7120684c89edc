"""The events a webhook may subscribe to, which audit rows raise them, and the sentence each one reads as.

Pure: no queries. ``event_for_kind`` says which webhook event an audit kind is (None: not one a webhook hears).
"""

from typing import Any

PROPOSAL_CREATED = "proposal.created"
PROPOSAL_DECIDED = "proposal.decided"
CONFIG_ACTIVATED = "config.activated"
CONFIG_ROLLED_BACK = "config.rolled_back"
WATCHDOG_VERDICT = "watchdog.verdict"
CANARY = "canary"
AGENT_LOCKED = "agent.locked"
AGENT_UNLOCKED = "agent.unlocked"
DIGEST_WEEKLY = "digest.weekly"
TEST = "webhook.test"  # sent by the admin's "send a test event", whatever the webhook subscribes to

EVENT_CHOICES = [
    (PROPOSAL_CREATED, "Proposal created"),
    (PROPOSAL_DECIDED, "Proposal decided (accepted, modified, rejected, or one approver's sign-off)"),
    (CONFIG_ACTIVATED, "Config version activated"),
    (CONFIG_ROLLED_BACK, "Config rolled back"),
    (WATCHDOG_VERDICT, "Watchdog verdict"),
    (CANARY, "Canary started, promoted, aborted or out of time"),
    (AGENT_LOCKED, "Config locked"),
    (AGENT_UNLOCKED, "Config unlocked"),
    (DIGEST_WEEKLY, "Weekly digest"),
]
EVENTS = [name for name, _ in EVENT_CHOICES]

# Audit kinds (approvals.models.AuditEvent.Kind) -> webhook event. Kinds not here (superseded, expired, tuner
# runs, rule edits) raise none.
KIND_EVENTS: dict[str, str] = {
    "proposal.created": PROPOSAL_CREATED,
    "proposal.accepted": PROPOSAL_DECIDED,
    "proposal.modified": PROPOSAL_DECIDED,
    "proposal.rejected": PROPOSAL_DECIDED,
    # One approver's sign-off when the agent needs several: a decided event marked partial (the change is not live).
    "proposal.approval_recorded": PROPOSAL_DECIDED,
    "config.activated": CONFIG_ACTIVATED,
    "config.manual": CONFIG_ACTIVATED,
    "config.rolled_back": CONFIG_ROLLED_BACK,
    "watch.good": WATCHDOG_VERDICT,
    "watch.inconclusive": WATCHDOG_VERDICT,
    "watch.marked_good": WATCHDOG_VERDICT,
    "watch.rolled_back": WATCHDOG_VERDICT,
    "agent.locked": AGENT_LOCKED,
    "agent.unlocked": AGENT_UNLOCKED,
    "canary.started": CANARY,
    "canary.promoted": CANARY,
    "canary.aborted": CANARY,
    "canary.inconclusive": CANARY,
}

_SENTENCES: dict[str, str] = {
    "proposal.created": "{who} proposed {change}",
    "proposal.accepted": "{who} accepted the proposal: {change}",
    "proposal.modified": "{who} modified the proposal: {change}",
    "proposal.rejected": "{who} rejected the proposal on {threshold}",
    "proposal.approval_recorded": "{who} signed off the proposal on {threshold}; it needs more approvals to go live",
    "config.activated": "config v{version} is live ({change}), approved by {who}",
    "config.manual": "{who} made config v{version} live by hand ({change})",
    "config.rolled_back": "{who} rolled the config back: v{version} is live ({change})",
    "watch.good": "the watchdog judged v{version} good",
    "watch.inconclusive": "the watch of v{version} ended without a verdict",
    "watch.marked_good": "{who} marked v{version} good",
    "watch.rolled_back": "{who} rolled back v{version}",
    "agent.locked": "{who} locked the config",
    "agent.unlocked": "{who} unlocked the config",
    "canary.started": "{who} started a canary: {change}",
    "canary.promoted": "{who} promoted the canary to every session: {change}",
    "canary.aborted": "{who} aborted the canary: config v{version} is live for every session",
    "canary.inconclusive": "the canary v{version} ran out of time without a verdict",
}
SUMMARY_MAX = 400
_MESSAGE_LEFT_OUT = {"config.activated"}  # its message ("v2 live (was v1)") repeats the sentence


def event_for_kind(kind: str) -> str | None:
    return KIND_EVENTS.get(kind)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def change_text(*, threshold_name: str, before: Any, after: Any) -> str:
    """``flag_threshold 0.6 -> 0.66``: what moved, from an audit row's before and after (dicts of values, or
    one threshold's numbers)."""
    if isinstance(before, dict) and isinstance(after, dict):
        moved = [
            f"{name} {_num(before.get(name))} -> {_num(after.get(name))}"
            for name in sorted(set(before) | set(after))
            if before.get(name) != after.get(name)
        ]
        return ", ".join(moved) or "no value changed"
    if before is not None or after is not None:
        return f"{threshold_name} {_num(before)} -> {_num(after)}".strip()
    return threshold_name or "no value changed"


def summary_text(
    *,
    agent_id: str,
    kind: str,
    who: str,
    threshold_name: str,
    before: Any,
    after: Any,
    version: int | None,
    message: str,
) -> str:
    """One plain sentence: ``triage: alice accepted the proposal: flag_threshold 0.6 -> 0.66 (clear cluster).``"""
    sentence = _SENTENCES.get(kind, kind).format(
        who=who,
        change=change_text(threshold_name=threshold_name, before=before, after=after),
        threshold=threshold_name or "a threshold",
        version=version if version is not None else "?",
    )
    text = f"{agent_id}: {sentence}"
    if message and kind not in _MESSAGE_LEFT_OUT:
        text += f" ({' '.join(message.split())})"
    if len(text) > SUMMARY_MAX:
        text = text[: SUMMARY_MAX - 1] + "…"
    return text + "."
