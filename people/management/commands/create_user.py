from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from loopsite.exceptions import DomainError
from people.roles import Role
from people.services import user_create


class Command(BaseCommand):
    help = "Create a user in a role (reviewer, approver or admin). A password is generated when none is given."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, help=", ".join(r.value for r in Role))
        parser.add_argument("--email", default="")
        parser.add_argument("--password", default=None, help="generated and printed when absent")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user, password = user_create(
                username=options["username"],
                role=options["role"],
                email=options["email"],
                password=options["password"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"created {options['role'].strip().lower()} {user.username}")
        if options["password"] is None:
            self.stdout.write(f"password: {password}")
