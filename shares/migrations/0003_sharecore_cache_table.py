"""The database cache table (settings.CACHES "portal_cache"), which the
portal-link rate limit uses on the embedded defaults. Creating it in a
migration means `migrate` alone prepares a fresh install (and the test DB)."""
from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor) -> None:
    # Skips tables that exist already, and does nothing for non-database caches (Redis).
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("shares", "0002_audit_append_only")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
