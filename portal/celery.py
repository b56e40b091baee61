"""The Celery app. Every periodic schedule lives here, in one place."""
import os
import sys
from pathlib import Path

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _running_celery_cli() -> bool:
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return argv0.name == "celery" or argv0.parts[-2:] == ("celery", "__main__.py")


if _running_celery_cli():
    # `celery worker/beat` would otherwise print a bad environment variable as a
    # traceback; an operator needs one line naming it (like manage.py and gunicorn).
    from django.conf import settings as _settings

    from portal.env import ConfigError

    try:
        _settings.INSTALLED_APPS
    except ConfigError as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)

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
