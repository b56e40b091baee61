"""manage.py add_bucket NAME [--endpoint-url …] [--public-endpoint-url …] [--region …] [--label …]

Registers a bucket, or updates the entry that exists (so scripts may run it
again). Errors are one line on stderr and exit code 1."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from shares.admin_buckets import learn_region, validate_endpoint_url
from shares.models import Bucket


def _one_line(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(m for e in errors for m in e.messages)}"
                         for field, errors in exc.error_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Register an S3 bucket in the portal (or update its entry)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The bucket's name in S3.")
        parser.add_argument("--endpoint-url", help="For S3-compatible stores (MinIO, Ceph, R2).")
        parser.add_argument("--public-endpoint-url", help="The endpoint a browser reaches, if it differs.")
        parser.add_argument("--region", help="Override the region (learned from S3 when left out).")
        parser.add_argument("--label", help="Display name.")
        parser.add_argument("--profile", help="Named AWS profile (credentials are never stored).")
        parser.add_argument("--addressing-style", choices=[c.value for c in Bucket.Addressing])
        parser.add_argument("--no-detect", action="store_true", help="Do not ask S3 for the region now.")

    def handle(self, *args, **options) -> None:
        name: str = options["name"]
        values = {
            "endpoint_url": options["endpoint_url"],
            "public_endpoint_url": options["public_endpoint_url"],
            "region": options["region"],
            "label": options["label"],
            "aws_profile": options["profile"],
            "addressing_style": options["addressing_style"],
        }
        try:
            for field in ("endpoint_url", "public_endpoint_url"):
                if values[field]:
                    values[field] = validate_endpoint_url(values[field])
        except ValidationError as exc:
            raise CommandError(f"{field.replace('_', '-')}: {_one_line(exc)}") from None

        bucket = Bucket.objects.filter(name=name).first()
        created = bucket is None
        if created:
            bucket = Bucket(name=name)
        for field, value in values.items():
            if value is not None:  # an option left out keeps the current value
                setattr(bucket, field, value)
        if options["region"] is not None:
            bucket.region_learned = False
        try:
            bucket.full_clean()
        except ValidationError as exc:
            raise CommandError(_one_line(exc)) from None

        if not options["no_detect"]:
            problem = learn_region(bucket)
            if problem:
                self.stderr.write(f"warning: region not learned now ({problem}); it will be on first use.")
        with transaction.atomic():
            bucket.save()
        verb = "Registered" if created else "Updated"
        region = bucket.region or "region unknown yet"
        self.stdout.write(f"{verb} bucket {bucket.name} ({region}).")
