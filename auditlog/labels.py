"""What a human response means for tuning (contract, "Human response"). Pure."""

from collections.abc import Sequence

DISMISS, ESCALATE, APPROVE = "dismiss", "escalate", "approve"


def effective_label(
    response_action: str | None, modified_action: str | None, taken_action: str, actions: Sequence[str]
) -> str | None:
    """dismiss, escalate or approve; a modify counts as escalate when stronger than taken, dismiss when weaker."""
    if response_action is None:
        return None
    if response_action != "modify":
        return response_action
    if modified_action is None or modified_action not in actions or taken_action not in actions:
        return DISMISS
    delta = list(actions).index(modified_action) - list(actions).index(taken_action)
    if delta > 0:
        return ESCALATE
    if delta < 0:
        return DISMISS
    return APPROVE


def is_error(response_action: str | None) -> bool:
    """The watchdog's error: anything but approve."""
    return response_action is not None and response_action != APPROVE
