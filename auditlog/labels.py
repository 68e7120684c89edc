"""What a human response means for tuning (contract, "Human response"). Pure."""

from collections.abc import Sequence

from django.db.models import Q

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


# ``is_error`` as a condition on responded decisions, for counting them in the database.
ERROR_RESPONSE = ~Q(response_action=APPROVE)


THUMBS = ("up", "down")


def binary_response(thumb: str, *, taken_action: str, actions: Sequence[str]) -> str:
    """What a thumb in binary mode records (the one mapping the queue page and the simulator both use):
    up is ``approve``; down on a decision that fired is ``dismiss`` (it should not have fired); down on a
    weakest-action decision, sampled for review, is ``escalate`` (it should have acted: a missed signal)."""
    if thumb not in THUMBS:
        raise ValueError(f"thumb must be up or down, not {thumb!r}")
    if thumb == "up":
        return APPROVE
    return ESCALATE if list(actions).index(taken_action) == 0 else DISMISS


def binary_meaning(thumb: str, *, taken_action: str, actions: Sequence[str]) -> str:
    """The words the queue shows after a thumb: what it meant and what was recorded."""
    action = binary_response(thumb, taken_action=taken_action, actions=actions)
    if thumb == "up":
        return "thumbs up: the agent was right → approve"
    if action == ESCALATE:
        return "thumbs down: should have acted → escalate"
    return "thumbs down: should not have fired → dismiss"
