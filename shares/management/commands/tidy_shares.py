from django.core.management.base import BaseCommand, CommandError

from shares import housekeeping
from shares.audit_db import Busy, job_lock


class Command(BaseCommand):
    help = "Mark expired shares; delete share records finished longer than SHARE_RETENTION_DAYS ago."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; change nothing.")

    def handle(self, *args, dry_run: bool = False, **options):
        try:
            with job_lock("tidy_shares"):
                result = housekeeping.tidy_shares(dry_run=dry_run)
        except Busy:
            raise CommandError("Another tidy run is going; try again later.") from None
        verb = "Would mark" if dry_run else "Marked"
        self.stdout.write(f"{verb} {result.expired} shares expired; "
                          f"{'would delete' if dry_run else 'deleted'} {result.deleted} old share records.")
