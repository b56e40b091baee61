"""Health checks for /healthz: database, Celery broker, each bucket. No secrets."""
from __future__ import annotations

from django.conf import settings
from django.db import connection

from . import s3
from .models import Bucket


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True}
    except Exception as exc:  # any driver error means "down"
        return {"ok": False, "error": type(exc).__name__}


def check_broker() -> dict:
    from portal.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": settings.CELERY_BROKER_URL.split("://", 1)[0]}
    except Exception as exc:
        return {"ok": False, "transport": settings.CELERY_BROKER_URL.split("://", 1)[0], "error": type(exc).__name__}


def check_buckets() -> dict:
    results = {}
    for bucket in Bucket.objects.filter(enabled=True):
        try:
            s3.head_bucket(s3.BucketConfig.from_bucket(bucket))
            results[bucket.name] = {"ok": True}
        except s3.S3Error as exc:
            results[bucket.name] = {"ok": False, "error": exc.code or "S3Error"}
    return results


def check_all() -> dict:
    database = check_database()
    broker = check_broker()
    buckets = check_buckets() if database["ok"] else {}
    failing = [name for name, part in (("database", database), ("broker", broker)) if not part["ok"]]
    failing += [f"bucket:{name}" for name, part in buckets.items() if not part["ok"]]
    return {
        "status": "ok" if not failing else "fail",
        "failing": failing,
        "database": database,
        "broker": broker,
        "buckets": buckets,
    }
