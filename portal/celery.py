"""The Celery app. Every periodic schedule lives here, in one place."""
import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# All beat schedules, in one place. Tasks are idempotent and take a lock, so a
# missed or doubled run is harmless.
app.conf.beat_schedule = {
    "tidy-shares": {"task": "shares.tasks.tidy_shares", "schedule": crontab(minute="*/10")},
    "seal-audit": {"task": "shares.tasks.seal_audit", "schedule": crontab(minute="*/15")},
    "purge-audit": {"task": "shares.tasks.purge_audit", "schedule": crontab(minute=17, hour=3)},
}


@app.task(name="portal.ping")
def ping(value: str = "pong") -> str:
    """A no-op task: proves a message goes through the broker to a worker and back."""
    return value
