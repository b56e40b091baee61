from django.core.management.base import BaseCommand, CommandError

from shares import housekeeping
from shares.audit_db import Busy, job_lock


class Command(BaseCommand):
    help = "Delete audit events older than AUDIT_RETENTION_DAYS (0 keeps everything), in batches."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print how many events would go; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=housekeeping.PURGE_BATCH_SIZE)

    def handle(self, *args, dry_run: bool = False, batch_size: int = 2000, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            with job_lock("purge_audit"):
                result = housekeeping.purge_audit(dry_run=dry_run, batch_size=batch_size)
        except Busy:
            raise CommandError("Another purge is running; try again later.") from None
        if result.cutoff is None:
            self.stdout.write("AUDIT_RETENTION_DAYS is 0: keeping every event.")
        elif dry_run:
            self.stdout.write(f"Would delete {result.count} events older than {result.cutoff.isoformat()}.")
        else:
            self.stdout.write(f"Deleted {result.count} events older than {result.cutoff.isoformat()}.")
