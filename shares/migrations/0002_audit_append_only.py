"""Make shares_auditevent append-only at the database.

UPDATE, DELETE (and TRUNCATE on PostgreSQL) are refused by triggers. The one
exception is the retention purge (shares.housekeeping.purge_audit), which opens a
narrow window for its own transaction only:
- PostgreSQL: `SET LOCAL portal.audit_purge = 'on'` (gone at commit/rollback);
- SQLite: the per-connection SQL function portal_audit_purge() (registered in
  shares.audit_db) returns 1 only inside shares.audit_db.purge_window(). Another
  client (the sqlite3 shell) lacks that function, so its UPDATE/DELETE fails too.
UPDATE is refused even inside the purge window: nothing ever rewrites an event.
"""
from django.db import migrations

PG_FORWARD = [
    """
    CREATE OR REPLACE FUNCTION shares_auditevent_guard() RETURNS trigger AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'TRUNCATE')
           AND coalesce(current_setting('portal.audit_purge', true), '') = 'on' THEN
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$ LANGUAGE plpgsql;
    """,
    """
    CREATE TRIGGER shares_auditevent_append_only
        BEFORE UPDATE OR DELETE ON shares_auditevent
        FOR EACH ROW EXECUTE FUNCTION shares_auditevent_guard();
    """,
    """
    CREATE TRIGGER shares_auditevent_no_truncate
        BEFORE TRUNCATE ON shares_auditevent
        FOR EACH STATEMENT EXECUTE FUNCTION shares_auditevent_guard();
    """,
]
PG_BACKWARD = [
    "DROP TRIGGER IF EXISTS shares_auditevent_no_truncate ON shares_auditevent;",
    "DROP TRIGGER IF EXISTS shares_auditevent_append_only ON shares_auditevent;",
    "DROP FUNCTION IF EXISTS shares_auditevent_guard();",
]
SQLITE_FORWARD = [
    """
    CREATE TRIGGER shares_auditevent_no_update BEFORE UPDATE ON shares_auditevent
    BEGIN
        SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused');
    END;
    """,
    """
    CREATE TRIGGER shares_auditevent_no_delete BEFORE DELETE ON shares_auditevent
    WHEN portal_audit_purge() IS NOT 1
    BEGIN
        SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused');
    END;
    """,
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS shares_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS shares_auditevent_no_delete;",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)  # None: "%" is literal

    return run


class Migration(migrations.Migration):
    dependencies = [("shares", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": PG_BACKWARD, "sqlite": SQLITE_BACKWARD}),
        ),
    ]
