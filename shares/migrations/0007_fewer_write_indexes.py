"""Three indexes fewer for every share and audit event written:

- shares_auditevent.actor_id and .share_id each had a single-column index (the
  ForeignKey default) that the (actor, -id) and (share, -id) indexes already
  serve: any lookup by actor or share uses the composite's leading column.
- shares_share.revoked_by_id is NULL in almost every row; only deleting a user
  looks shares up by it (SET NULL), and `revoked_by_id IN (…)` can use a
  partial index of the revoked rows.

The field changes are state only, and the indexes are dropped by name: on
SQLite an AlterField remakes the whole table, which would copy every audit
event and leave the table without its append-only triggers until post_migrate
puts them back (audit_db.ensure_append_only_sqlite)."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Django's names for ForeignKey indexes are the same on SQLite and PostgreSQL.
DROPPED = [
    ("shares_auditevent_actor_id_6cc191dc", "shares_auditevent", "actor_id"),
    ("shares_auditevent_share_id_3c2ef0c9", "shares_auditevent", "share_id"),
    ("shares_share_revoked_by_id_4288a149", "shares_share", "revoked_by_id"),
]


class Migration(migrations.Migration):

    dependencies = [
        ('shares', '0006_share_fewer_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='auditevent',
                    name='actor',
                    field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='auditevent',
                    name='share',
                    field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='events', to='shares.share'),
                ),
                migrations.AlterField(
                    model_name='share',
                    name='revoked_by',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
                ),
            ],
            database_operations=[
                migrations.RunSQL(f'DROP INDEX IF EXISTS "{name}"', f'CREATE INDEX "{name}" ON "{table}" ("{column}")')
                for name, table, column in DROPPED
            ],
        ),
        migrations.AddIndex(
            model_name='share',
            index=models.Index(condition=models.Q(('revoked_by__isnull', False)), fields=['revoked_by'], name='shares_share_revoked_by_idx'),
        ),
    ]
