"""`python manage.py create_api_token USERNAME [--name N]`: print a new personal API token."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from shares import tokens


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it (it is shown only this once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line", help='a label for the token (default "command line")')

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user named {options['username']!r}")
        try:
            _token, plaintext = tokens.create_api_token(user, options["name"])
        except tokens.TokenError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(plaintext)
