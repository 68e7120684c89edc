from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from loopsite.exceptions import DomainError
from people.services import token_create, user_get


class Command(BaseCommand):
    help = "Issue a personal API token for a user. The token is printed alone on the last line, once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="default", help="a label for the token, e.g. the script using it")

    def handle(self, *args: Any, **options: Any) -> None:
        if len(options["name"]) > 100:
            raise CommandError("--name is longer than 100 characters")
        try:
            user = user_get(username=options["username"])
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if not user.is_active:
            raise CommandError(f"user {user.username!r} is inactive")
        token, key = token_create(user=user, name=options["name"])
        self.stdout.write(f"token {token.prefix} for {user.username}; it is shown once, store it now:")
        self.stdout.write(key)
