"""Celery tasks: thin wrappers over shares.housekeeping. Scheduled in
portal/celery.py (the one place for beat schedules); never enqueued from a
request, so a dead broker never blocks a page.

Each task takes a lock (a second concurrent run returns "busy" and does nothing),
is acknowledged late and re-queued if its worker dies, and has time limits below
the broker's visibility timeout (3600 s on Redis)."""
from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from . import housekeeping
from .audit_db import Busy, job_lock

# Set on each task, not only as app defaults: Celery reads time limits from the
# task itself. The values live once, in settings (CELERY_TASK_*).
TASK_OPTIONS: dict[str, Any] = {
    "acks_late": settings.CELERY_TASK_ACKS_LATE,
    "reject_on_worker_lost": settings.CELERY_TASK_REJECT_ON_WORKER_LOST,
    "soft_time_limit": settings.CELERY_TASK_SOFT_TIME_LIMIT,
    "time_limit": settings.CELERY_TASK_TIME_LIMIT,
    "ignore_result": False,
}


@shared_task(name="shares.tasks.tidy_shares", **TASK_OPTIONS)
def tidy_shares() -> dict[str, Any]:
    try:
        with job_lock("tidy_shares"):
            result = housekeeping.tidy_shares()
    except Busy:
        return {"status": "busy"}
    return {"status": "ok", "expired": result.expired, "deleted": result.deleted,
            "rate_counters": result.rate_counters}


@shared_task(name="shares.tasks.seal_audit", **TASK_OPTIONS)
def seal_audit() -> dict[str, Any]:
    try:
        with job_lock("seal_audit"):
            sealed = housekeeping.seal_audit()
    except Busy:
        return {"status": "busy"}
    return {"status": "ok", "sealed": len(sealed)}


@shared_task(name="shares.tasks.purge_audit", **TASK_OPTIONS)
def purge_audit(batch_size: int = housekeeping.PURGE_BATCH_SIZE) -> dict[str, Any]:
    try:
        with job_lock("purge_audit"):
            result = housekeeping.purge_audit(batch_size=batch_size)
    except Busy:
        return {"status": "busy"}
    return {"status": "ok", "deleted": result.count, "cutoff": result.cutoff.isoformat() if result.cutoff else None}
