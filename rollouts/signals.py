"""The live config carries the pending proposal's shadow: every save of a proposal may change which one that is."""

from typing import Any

from django.db import transaction

from thresholds.selectors import config_cache_clear


def proposal_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Drop the agent's cached live config once the proposal's change is committed (a proposal made, decided,
    superseded or expired), so agents read the new shadow, or none, at their next poll."""
    agent = instance.agent
    transaction.on_commit(lambda: config_cache_clear(agent=agent))
