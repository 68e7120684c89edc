"""``rollback_config AGENT_ID --to N --by USERNAME --reason TEXT``: restore an earlier version's values."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.management.commands.run_watchdog import parse_now
from approvals.services import config_rollback
from loopsite.exceptions import DomainError
from thresholds.selectors import agent_get


class Command(BaseCommand):
    help = "Roll an agent's config back to an earlier version, as a new live version (audited, approvers emailed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_id")
        parser.add_argument("--to", type=int, required=True, help="The version number whose values to restore.")
        parser.add_argument("--by", required=True, help="The approver doing it (a username).")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--now", help="Act as of this time (ISO 8601 with offset).")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["by"]).first()
        if user is None:
            raise CommandError(f"no user {options['by']!r}")
        try:
            agent = agent_get(agent_id=options["agent_id"])
            version = config_rollback(
                agent=agent,
                to_version=options["to"],
                actor=user,
                reason=options["reason"],
                now=parse_now(options.get("now")),
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"{agent.agent_id} v{version.number} is live ({version.source}): {version.values}")
