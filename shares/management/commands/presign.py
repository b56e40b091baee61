"""`python manage.py presign s3://BUCKET/KEY` — like `aws s3 presign`, but recorded.

Prints only the URL on stdout. Every error is one line on stderr and exit code 1.
Credentials and region come from the standard AWS environment, then from the
bucket's registry entry if it has one; the bucket need not be registered.
"""
from __future__ import annotations

import os
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from shares import services
from shares.models import WEEK, bucket_name_validator
from django.core.exceptions import ValidationError

EXPIRY_ERROR = f"--expires-in must be a whole number of seconds from 1 to {WEEK}"


class CliError(Exception):
    pass


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://BUCKET/KEY → (bucket, key). The key is kept verbatim: spaces, "//",
    "..", "+", "%" and non-ASCII are all legal and distinct in S3."""
    if not uri.startswith("s3://"):
        raise CliError(f"expected s3://BUCKET/KEY, got {uri!r}")
    bucket, slash, key = uri[len("s3://"):].partition("/")
    if not bucket or not slash or not key:
        raise CliError(f"expected s3://BUCKET/KEY with an object key, got {uri!r}")
    try:
        bucket_name_validator(bucket)
    except ValidationError:
        raise CliError(f"{bucket!r} is not a valid S3 bucket name") from None
    return bucket, key


class Command(BaseCommand):
    help = "Print a presigned GET URL for s3://BUCKET/KEY and record the share (like `aws s3 presign`)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def one_line_error(message: str) -> None:
            # argparse would print the usage too (and exit 2): keep errors one line, exit 1.
            sys.stderr.write(f"presign: {message}\n")
            sys.exit(1)

        if not getattr(parser, "called_from_command_line", False):
            return parser
        parser.error = one_line_error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("uri", metavar="s3://BUCKET/KEY")
        parser.add_argument("--expires-in", dest="expires_in", default="3600",
                            help=f"seconds, 1 to {WEEK} (default 3600)")
        parser.add_argument("--region", default=None, help="the bucket's region (default: AWS_REGION, the registry, S3)")
        parser.add_argument("--endpoint-url", dest="endpoint_url", default=None,
                            help="an S3-compatible endpoint (MinIO, Ceph, R2)")
        parser.add_argument("--as", dest="as_user", default=None, metavar="USERNAME",
                            help="record the share as created by this user (default: the 'cli' actor)")

    def handle(self, *args, **options) -> None:
        try:
            url = self._presign(options)
        except CliError as exc:
            self._fail(str(exc))
        except services.ShareError as exc:
            self._fail(exc.message.replace("expires_in", "--expires-in") if exc.field == "expires_in" else exc.message)
        try:
            self.stdout.write(url)
            self.stdout.flush()
        except BrokenPipeError:
            # `presign … | head -c0`: the reader went away. Python would print a
            # traceback at exit while flushing; point stdout at /dev/null first.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)

    def _fail(self, message: str) -> None:
        # One line: never echo a URL or credential here.
        self.stderr.write("presign: " + " ".join(message.split()))
        sys.exit(1)

    def _presign(self, options) -> str:
        bucket, key = parse_s3_uri(options["uri"])
        try:
            expires_in = services.parse_expires_in(options["expires_in"], field="--expires-in")
        except services.ShareError:
            raise CliError(EXPIRY_ERROR) from None
        if expires_in > WEEK:
            raise CliError(EXPIRY_ERROR)
        cli_user = None
        if options["as_user"]:
            cli_user = get_user_model().objects.filter(username=options["as_user"], is_active=True).first()
            if cli_user is None:
                raise CliError(f"no active user named {options['as_user']!r}")
        result = services.share_create(
            user=None,
            cli_user=cli_user,
            bucket_name=bucket,
            key=key,
            expires_in=expires_in,
            kind="direct",
            region=options["region"],
            endpoint_url=options["endpoint_url"],
        )
        if result.warning:
            self.stderr.write("presign: warning: " + result.warning)
        return result.url
