import math
from argparse import ArgumentParser
from io import StringIO
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone

from loopsite.exceptions import DomainError
from thresholds.management.commands.set_approvers import approvers_set, users_get
from thresholds.services import DEFAULT_ACTIONS, agent_create

THRESHOLD_FORMAT = "NAME=VALUE[@ACTION[:MIN:MAX]]"


def threshold_parse(text: str) -> dict[str, Any]:
    """``NAME=VALUE[@ACTION[:MIN:MAX]]`` as the threshold spec ``agent_create`` takes."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise CommandError(f"--threshold {text!r}: expected {THRESHOLD_FORMAT}")
    value_text, at, action_part = rest.partition("@")
    spec: dict[str, Any] = {"name": name.strip(), "value": _number(value_text, text, "VALUE")}
    if at:
        action, *bounds = action_part.split(":")
        if not action.strip():
            raise CommandError(f"--threshold {text!r}: the action after @ is empty; expected {THRESHOLD_FORMAT}")
        spec["action"] = action.strip()
        if bounds:
            if len(bounds) != 2:
                raise CommandError(f"--threshold {text!r}: give both MIN and MAX; expected {THRESHOLD_FORMAT}")
            spec["min"], spec["max"] = _number(bounds[0], text, "MIN"), _number(bounds[1], text, "MAX")
            if spec["min"] > spec["max"]:
                raise CommandError(f"--threshold {text!r}: MIN {spec['min']} is above MAX {spec['max']}")
    return spec


def _number(raw: str, text: str, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise CommandError(f"--threshold {text!r}: {what} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise CommandError(f"--threshold {text!r}: {what} must be a finite number")
    return value


class Command(BaseCommand):
    help = (
        "Register an agent with its thresholds and initial config version. Prints its API key alone on the last line."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("agent_id", metavar="AGENT_ID")
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--actions",
            default=",".join(DEFAULT_ACTIONS),
            help=f"ordered action names, weakest first (default {','.join(DEFAULT_ACTIONS)})",
        )
        parser.add_argument(
            "--threshold",
            action="append",
            default=[],
            metavar=THRESHOLD_FORMAT,
            help="repeatable; the action defaults to the strongest, MIN:MAX to 0:1",
        )
        parser.add_argument(
            "--sample-rate", type=float, default=None, help="share of weakest-action decisions reviewed"
        )
        parser.add_argument("--timezone", default=None, help="IANA name, e.g. Europe/Berlin (default UTC)")
        parser.add_argument(
            "--approver",
            action="append",
            default=[],
            metavar="USERNAME",
            help="a designated approver (repeatable): only they and admins decide its proposals, lock it, roll it back",
        )
        parser.add_argument(
            "--required-approvals",
            type=int,
            default=None,
            metavar="N",
            help="distinct approvals a change needs before it goes live (default 1; at most the --approvers given)",
        )
        parser.add_argument("--binary", action="store_true", help="reviewers answer thumbs up / thumbs down")
        parser.add_argument(
            "--rule-based",
            action="store_true",
            help="a rule-based agent: confidence optional, each threshold judged on its own rule's hits",
        )
        parser.add_argument(
            "--rule",
            action="append",
            default=[],
            metavar="THRESHOLD=RULE[:FEATURE]",
            help="the matchedRules name of a threshold's rule and the feature holding its score (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agent_id = options["agent_id"]
        try:
            validate_slug(agent_id)
        except ValidationError:
            raise CommandError(f"AGENT_ID {agent_id!r} may hold only letters, digits, - and _") from None
        if len(agent_id) > 100:
            raise CommandError("AGENT_ID is longer than 100 characters")
        if not options["threshold"]:
            raise CommandError(f"give at least one --threshold {THRESHOLD_FORMAT}")
        thresholds = [threshold_parse(t) for t in options["threshold"]]
        actions = [a.strip() for a in options["actions"].split(",") if a.strip()]
        by_name = {t["name"]: t for t in thresholds}
        for text in options["rule"]:
            tname, sep, rest = text.partition("=")
            rule_name, _, feature = rest.partition(":")
            if not sep or tname.strip() not in by_name or not rule_name.strip():
                raise CommandError(f"--rule {text!r}: expected THRESHOLD=RULE[:FEATURE] for a --threshold given")
            by_name[tname.strip()].update(rule=rule_name.strip(), scoreFeature=feature.strip())
        extra: dict[str, Any] = {"binary_mode": options["binary"], "rule_based": options["rule_based"]}
        if options["sample_rate"] is not None:
            rate = options["sample_rate"]
            if not 0.0 <= rate <= 1.0:
                raise CommandError(f"--sample-rate {rate} must be between 0 and 1")
            extra["review_sample_rate"] = rate
        if options["timezone"] is not None:
            try:
                ZoneInfo(options["timezone"])
            except (ZoneInfoNotFoundError, ValueError):
                raise CommandError(f"--timezone {options['timezone']!r} is not a known IANA time zone") from None
            extra["timezone"] = options["timezone"]
        approvers = users_get(options["approver"], "--approver")
        try:
            with transaction.atomic():
                agent, key = agent_create(
                    agent_id=agent_id,
                    name=options["name"],
                    actions=actions,
                    thresholds=thresholds,
                    now=timezone.now(),
                    **extra,
                )
                if approvers or options["required_approvals"] is not None:
                    approvers_set(
                        agent=agent, approvers=approvers, required=options["required_approvals"], command="create_agent"
                    )
        except DomainError as exc:
            options_of = {"approvers": "--approver: ", "requiredApprovals": "--required-approvals: "}
            option = options_of.get(exc.field or "", "")
            hint = " (create_user --role approver)" if exc.field == "approvers" else ""
            raise CommandError(f"{option}{exc.message}{hint}") from None
        values = ", ".join(f"{t['name']}={t['value']:g}" for t in thresholds)
        self.stdout.write(f"registered agent {agent.agent_id} ({' < '.join(agent.actions)}); config v1: {values}")
        # Its weekly tuner schedule, so a running beat picks the new agent up without another command.
        call_command("setup_periodic_tasks", stdout=StringIO())
        self.stdout.write(f"scheduled its tuner: Monday 03:00 {agent.timezone}")
        self.stdout.write("its API key is shown once, store it now:")
        self.stdout.write(key)
