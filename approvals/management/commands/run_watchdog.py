"""``run_watchdog [--now ISO]``: one watchdog pass now; prints what it rolled back (and what it watched)."""

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from approvals.models import VersionWatch
from approvals.watchdog import watchdog_pass
from rollouts.services import canaries_pass


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
    help = (
        "Run one watchdog pass: promote or abort running canaries; judge every change under watch and roll back "
        "those whose error rate rose significantly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", help="Act as of this time (ISO 8601 with offset).")

    def handle(self, *args: Any, **options: Any) -> None:
        now = parse_now(options.get("now"))
        for judged in canaries_pass(now=now):
            canary = judged.canary
            made = f" -> v{judged.version.number} live" if judged.version is not None else ""
            self.stdout.write(
                f"canary {canary.agent.agent_id} v{canary.version.number} ({canary.threshold_name}, "
                f"{canary.share:.0%} of sessions): {judged.assessment.verdict}, now {judged.outcome}{made}: "
                f"{judged.assessment.explain()}"
            )
        results = watchdog_pass(now=now)
        for done in results:
            version = done.watch.version
            source = f"proposal #{version.proposal_id}" if version.proposal_id else version.source
            self.stdout.write(
                f"watching {version.agent.agent_id} v{version.number} ({source}): {done.assessment.verdict}, "
                f"now {done.outcome}: {done.assessment.explain()}"
            )
        rolled = [done.rollback for done in results if done.rollback is not None]
        for v in rolled:
            undone = VersionWatch.objects.filter(rolled_back_by=v).order_by("version__number")
            numbers = ", ".join(f"v{n}" for n in undone.values_list("version__number", flat=True)) or "?"
            self.stdout.write(f"rolled back {v.agent.agent_id} {numbers} -> v{v.number} {v.values}: {v.reason}")
        if not results:
            self.stdout.write("nothing under watch")
        if not rolled:
            self.stdout.write("nothing rolled back")
