"""``lock_config AGENT_ID --by USERNAME --reason TEXT [--unlock]``: lock (or unlock) an agent's config."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.lock import agent_config_lock, agent_config_unlock
from approvals.management.commands.run_watchdog import parse_now
from loopsite.exceptions import DomainError
from thresholds.selectors import agent_get


class Command(BaseCommand):
    help = (
        "Lock an agent's config once it has converged: the tuner keeps reporting but proposes nothing, and only a "
        "rollback changes it. --unlock lifts the lock. Both are audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_id")
        parser.add_argument("--by", required=True, help="The approver doing it (a username).")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--unlock", action="store_true", help="Lift the lock instead.")
        parser.add_argument("--now", help="Act as of this time (ISO 8601 with offset).")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["by"]).first()
        if user is None:
            raise CommandError(f"no user {options['by']!r}")
        service = agent_config_unlock if options["unlock"] else agent_config_lock
        try:
            agent = service(
                agent=agent_get(agent_id=options["agent_id"]),
                actor=user,
                rationale=options["reason"],
                now=parse_now(options.get("now")),
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        state = "locked" if agent.is_locked else "unlocked"
        self.stdout.write(f"{agent.agent_id}'s config is {state}.")
