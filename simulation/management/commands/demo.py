"""``demo``: a running system worth exploring. Safe to run on every start: it only adds what is missing."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulation.demo import demo_build
from simulation.own_database import OwnDatabaseRefused, database_ready


class Command(BaseCommand):
    help = "Create demo users (rita, alice, admin), demo agents with simulated history, a pending proposal."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--per-day", type=int, default=200, help="simulated decisions a day (default 200)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            database_ready(self.stderr.write)
        except OwnDatabaseRefused as exc:
            raise CommandError(str(exc)) from None
        report = demo_build(per_day=opts["per_day"])
        self.stdout.write("Demo users:")
        for username, role, password in report.users:
            shown = password if password else "(existed already with another password; unchanged)"
            self.stdout.write(f"  {role:9} {username:7} password: {shown}")
        self.stdout.write("Demo agents:")
        for agent_id, what, key in report.agents:
            self.stdout.write(f"  {agent_id}: {what}")
            if key:
                self.stdout.write(f"    API key (shown once): {key}")
            else:
                self.stdout.write(
                    f"    API key: shown when it was made; a new one: manage.py create_agent_key {agent_id}"
                )
        site = settings.SITE_URL
        self.stdout.write(f"Open {site}/dashboard/ (any user), {site}/queue/ (rita) and {site}/proposals/ (alice).")
