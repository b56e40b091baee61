from django.core.management.base import BaseCommand, CommandError

from shares import housekeeping
from shares.audit_db import Busy, job_lock


class Command(BaseCommand):
    help = "Seal every closed period of audit events with a chained HMAC digest."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print the periods that would be sealed.")

    def handle(self, *args, dry_run: bool = False, **options):
        try:
            with job_lock("seal_audit"):
                plans = housekeeping.seal_audit(dry_run=dry_run)
        except Busy:
            raise CommandError("Another sealing run is going; try again later.") from None
        for plan in plans:
            self.stdout.write(f"{'would seal' if dry_run else 'sealed'} {plan.period_start.isoformat()} → "
                              f"{plan.period_end.isoformat()}: {plan.event_count} events")
        if not plans:
            self.stdout.write("Nothing to seal: no closed period since the last seal.")
