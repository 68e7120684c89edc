"""``verify_audit [AGENT_ID ...] [--json]``: check every agent's audit hash chain and report the first broken link."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.chain import chain_verify
from thresholds.models import Agent


class Command(BaseCommand):
    help = (
        "Check the audit trail's hash chains (every agent, or those named): each row must match its hash and link "
        "to the row before it. Prints each agent's head hash, which can be kept elsewhere to detect the removal of "
        "the newest rows. Exits with status 1 at the first broken link of any agent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_ids", nargs="*", metavar="AGENT_ID")
        parser.add_argument("--json", action="store_true", help="One JSON document instead of lines of text.")

    def handle(self, *args: Any, **options: Any) -> None:
        wanted = options["agent_ids"] or None
        if wanted:
            unknown = sorted(
                set(wanted) - set(Agent.objects.filter(agent_id__in=wanted).values_list("agent_id", flat=True))
            )
            if unknown:
                raise CommandError(f"no agent {', '.join(unknown)}")
        reports = list(chain_verify(wanted))
        broken = [r for r in reports if r.broken is not None]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "ok": not broken,
                        "agents": [
                            {
                                "agentId": r.agent_id,
                                "events": r.events,
                                "head": r.head,
                                "broken": None
                                if r.broken is None
                                else {
                                    "eventId": r.broken.event_id,
                                    "kind": r.broken.kind,
                                    "at": r.broken.at.isoformat(),
                                    "problem": r.broken.problem,
                                },
                            }
                            for r in reports
                        ],
                    },
                    indent=2,
                )
            )
        else:
            for r in reports:
                if r.broken is None:
                    self.stdout.write(f"ok      {r.agent_id}: {r.events} events, head {r.head}")
                else:
                    b = r.broken
                    self.stdout.write(
                        f"BROKEN  {r.agent_id}: event #{b.event_id} ({b.kind}, {b.at:%Y-%m-%d %H:%M:%S}): {b.problem}"
                    )
        if broken:
            raise CommandError(
                f"the audit trail of {len(broken)} of {len(reports)} agents is broken: "
                + ", ".join(f"{r.agent_id} at event #{r.broken.event_id}" for r in broken if r.broken)
            )
