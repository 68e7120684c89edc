from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loopsite.exceptions import DomainError
from people.services import user_get
from thresholds.models import Agent
from thresholds.selectors import agent_get


def users_get(usernames: list[str], option: str) -> list[Any]:
    """The users named, or a CommandError naming the option and the unknown user."""
    users = []
    for username in usernames:
        try:
            users.append(user_get(username=username))
        except DomainError as exc:
            raise CommandError(f"{option}: {exc.message}") from None
    return users


def approvers_set(*, agent: Agent, approvers: list[Any], required: int | None, command: str) -> Agent:
    """Through the gate's one service, audited as done by ``command``."""
    from approvals.services import agent_approvers_set

    return agent_approvers_set(
        agent=agent,
        approvers=approvers,
        required=required,
        actor=None,
        actor_label=command,
        now=timezone.now(),
        via=command,
    )


def approvers_describe(agent: Agent) -> str:
    names = sorted(agent.approvers.values_list("username", flat=True))
    who = f"designated approvers {', '.join(names)}" if names else "no designated approvers (every approver decides)"
    n = agent.required_approvals
    return f"{agent.agent_id}: {who}; {n} approval{'s' if n != 1 else ''} required"


class Command(BaseCommand):
    help = (
        "Set an agent's designated approvers (only they and admins decide its proposals, lock it and roll it back) "
        "and how many distinct approvals a change needs. Audited as a rules.changed event. Without USERNAMEs, "
        "--required or --clear it prints the current setting."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("agent_id", metavar="AGENT_ID")
        parser.add_argument("usernames", nargs="*", metavar="USERNAME", help="the designated approvers, replacing any")
        parser.add_argument("--required", type=int, default=None, metavar="N", help="approvals a change needs")
        parser.add_argument("--clear", action="store_true", help="no designated approvers: every approver decides")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            agent = agent_get(agent_id=options["agent_id"])
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if options["clear"] and options["usernames"]:
            raise CommandError("give USERNAMEs or --clear, not both")
        if not (options["usernames"] or options["clear"] or options["required"] is not None):
            self.stdout.write(approvers_describe(agent))
            return
        approvers = (
            users_get(options["usernames"], "USERNAME")
            if options["usernames"] or options["clear"]
            else list(agent.approvers.all())
        )
        try:
            agent = approvers_set(
                agent=agent, approvers=approvers, required=options["required"], command="set_approvers"
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(approvers_describe(agent))
