import json
import sys
from argparse import ArgumentParser
from contextlib import redirect_stdout
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from loopsite.exceptions import DomainError
from thresholds.selectors import agent_get
from tuner.services import tuner_cycle_run


class Command(BaseCommand):
    help = "Run one tuner cycle for an agent now, synchronously, and print the cycle's output JSON (alone on stdout)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("agent_id")
        parser.add_argument("--now", help="act as of this ISO 8601 time (with offset)")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["now"]:
            parsed = parse_datetime(options["now"])
            if parsed is None or parsed.tzinfo is None:
                raise CommandError(f"--now {options['now']!r}: expected an ISO 8601 time with an offset")
            now = parsed
        try:
            agent = agent_get(agent_id=options["agent_id"])
        except DomainError as exc:
            raise CommandError(exc.message) from None
        # stdout is the output JSON alone (`run_tuner ... | jq`): what the cycle prints on the way, such as the
        # approvers' email with the console backend, goes to stderr.
        with redirect_stdout(sys.stderr):
            run = tuner_cycle_run(agent=agent, now=now)
        if run.output is None:
            raise CommandError(f"cycle {run.cycle} is {run.status} in another worker; no output yet")
        self.stdout.write(json.dumps(run.output, indent=2))
