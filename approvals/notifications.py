"""Emails to the agent's designated approvers, sent after commit. (Being built in the approvals issue.)"""


def proposals_notify(*, run_id: int) -> None:
    """Tell the approvers that a cycle produced proposals. Called by the tuner in transaction.on_commit."""
    return None
