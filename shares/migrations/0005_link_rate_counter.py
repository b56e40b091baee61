"""The portal-link rate limit's own counter table (shares/ratelimit.py), used when
the default cache is the database cache: one row per client IP per minute,
counted by a single INSERT … ON CONFLICT DO UPDATE … RETURNING per visit."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shares", "0004_audit_key_search_index")]

    operations = [
        migrations.CreateModel(
            name="LinkRateCounter",
            fields=[
                ("pk", models.CompositePrimaryKey("minute", "client", blank=True, editable=False, primary_key=True,
                                                  serialize=False)),
                ("minute", models.IntegerField()),
                ("client", models.CharField(max_length=64)),
                ("visits", models.IntegerField()),
            ],
        ),
    ]
