"""PostgreSQL only: a trigram index for the audit page's "key contains" search
(Django's icontains is UPPER(key) LIKE UPPER('%text%'), which no b-tree serves).

pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create
it. Where it cannot be created, the search still works, by a scan."""
from django.db import migrations, transaction

INDEX = "shares_auditevent_key_trgm"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm", params=None)
    except Exception:  # no privilege: keep the scan
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON shares_auditevent USING gin (UPPER(key) gin_trgm_ops)", params=None
    )


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}", params=None)


class Migration(migrations.Migration):
    dependencies = [("shares", "0003_sharecore_cache_table")]

    operations = [migrations.RunPython(forward, backward)]
