from django.core.management.base import BaseCommand, CommandError

from shares import housekeeping


def _ids(ids: list[int], limit: int = 200) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" … and {len(ids) - limit} more" if len(ids) > limit else "")


class Command(BaseCommand):
    help = "Recompute the audit seals; report events changed, removed or inserted after sealing. Exit 1 if any."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Accepted for symmetry: verification never writes.")

    def handle(self, *args, **options):
        report = housekeeping.verify_audit()
        out = self.stdout
        out.write(f"Checked {report.seals} seals covering {report.events} events; "
                  f"{report.purged} purged by retention; {report.unsealed} events not sealed yet.")
        for message in report.chain_errors:
            out.write(f"CHAIN: {message}")
        if report.changed:
            out.write(f"CHANGED after sealing: {_ids(report.changed)}")
        if report.removed:
            out.write(f"REMOVED after sealing: {_ids(report.removed)}")
        if report.inserted:
            out.write(f"INSERTED after sealing: {_ids(report.inserted)}")
        if report.ok:
            out.write("OK: the audit log matches its seals.")
        else:
            raise CommandError("the audit log does not match its seals", returncode=1)
