"""``run_watchdog [--now ISO]``: one watchdog pass now; prints what it rolled back (and what it watched)."""

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from approvals.selectors import watched_versions
from approvals.watchdog import version_assess, watchdog_run


def parse_now(value: str | None) -> datetime:
    if not value:
        return timezone.now()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"--now: not an ISO 8601 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise CommandError("--now needs a UTC offset, e.g. 2026-03-02T09:00:00Z")
    return moment


class Command(BaseCommand):
    help = "Run one watchdog pass: roll back live proposal changes whose error rate rose significantly."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", help="Act as of this time (ISO 8601 with offset).")

    def handle(self, *args: Any, **options: Any) -> None:
        now = parse_now(options.get("now"))
        for version in watched_versions():
            assessment, _ = version_assess(version=version)
            self.stdout.write(
                f"watching {version.agent.agent_id} v{version.number} (proposal #{version.proposal_id}): "
                f"{assessment.verdict}: {assessment.explain()}"
            )
        rolled = watchdog_run(now=now)
        for v in rolled:
            undone = v.rolled_back_version
            self.stdout.write(
                f"rolled back {v.agent.agent_id} v{undone.number if undone else '?'} -> v{v.number} "
                f"{v.values}: {v.reason}"
            )
        if not rolled:
            self.stdout.write("nothing rolled back")
