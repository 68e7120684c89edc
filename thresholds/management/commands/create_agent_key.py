from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from loopsite.exceptions import DomainError
from thresholds.selectors import agent_get
from thresholds.services import agent_key_create


class Command(BaseCommand):
    help = (
        "Issue another API key for a registered agent, e.g. to rotate one (revoke the old key in the admin). "
        "Prints the key alone on the last line."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("agent_id", metavar="AGENT_ID")
        parser.add_argument("--name", default="default", help="a label for the key, e.g. where it is deployed")

    def handle(self, *args: Any, **options: Any) -> None:
        if len(options["name"]) > 100:
            raise CommandError("--name is longer than 100 characters")
        try:
            agent = agent_get(agent_id=options["agent_id"])
        except DomainError as exc:
            raise CommandError(exc.message) from None
        key = agent_key_create(agent=agent, name=options["name"])
        self.stdout.write(f"new key for {agent.agent_id} ({options['name']}); it is shown once, store it now:")
        self.stdout.write(key)
