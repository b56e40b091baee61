"""Health checks for /healthz: database, Celery broker, each enabled bucket.

The report names each part and, when one fails, the exception's class name only:
never a URL, a host, a password or a message that might carry one. /healthz is
anonymous, so it must stay cheap: the broker gets one short connection attempt
with no retries, and bucket probes are remembered for BUCKET_PROBE_TTL seconds so
that hammering /healthz cannot hammer S3.
"""
from __future__ import annotations

import os
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from . import s3
from .models import Bucket

BROKER_TIMEOUT = 2.0  # seconds; a load balancer's probe must not hang on a dead broker
BUCKET_PROBE_TTL = 10.0  # seconds a bucket probe result is reused

_probe_lock = threading.Lock()
_probes: dict[s3.BucketConfig, tuple[float, dict]] = {}


def clear_cache() -> None:
    with _probe_lock:
        _probes.clear()


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True}
    except Exception as exc:  # any driver error means "down"
        return {"ok": False, "error": type(exc).__name__}


def _transport(url: str) -> str:
    return url.split("://", 1)[0]


def check_broker() -> dict:
    url = settings.CELERY_BROKER_URL
    transport = _transport(url)
    try:
        if transport == "filesystem":
            # Nothing to connect to: the broker is a folder; it must be writable.
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
            if not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
                return {"ok": False, "transport": transport, "error": "QueueFolderNotWritable"}
            return {"ok": True, "transport": transport}
        from kombu import Connection

        # A fresh connection with its own short timeouts, not the app's pool: the
        # pool retries with back-off, which would make the probe hang.
        with Connection(url, connect_timeout=BROKER_TIMEOUT,
                        transport_options={"socket_timeout": BROKER_TIMEOUT,
                                           "socket_connect_timeout": BROKER_TIMEOUT,
                                           "max_retries": 0}) as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT)
        return {"ok": True, "transport": transport}
    except Exception as exc:
        return {"ok": False, "transport": transport, "error": type(exc).__name__}


def _probe_bucket(config: s3.BucketConfig) -> dict:
    now = time.monotonic()
    with _probe_lock:
        cached = _probes.get(config)
        if cached and now - cached[0] < BUCKET_PROBE_TTL:
            return cached[1]
    try:
        s3.head_bucket(config)
        result = {"ok": True}
    except s3.S3Error as exc:
        result = {"ok": False, "error": exc.code or "S3Error"}
    except Exception as exc:  # a probe must never turn /healthz into a 500
        result = {"ok": False, "error": type(exc).__name__}
    with _probe_lock:
        _probes[config] = (time.monotonic(), result)
    return result


def check_buckets() -> dict:
    return {bucket.name: _probe_bucket(s3.BucketConfig.from_bucket(bucket))
            for bucket in Bucket.objects.filter(enabled=True).order_by("name")}


def check_all() -> dict:
    database = check_database()
    broker = check_broker()
    buckets = {}
    if database["ok"]:
        try:
            buckets = check_buckets()
        except DatabaseError as exc:  # reachable but not usable, e.g. not migrated yet
            database = {"ok": False, "error": type(exc).__name__}
    failing = [name for name, part in (("database", database), ("broker", broker)) if not part["ok"]]
    failing += [f"bucket:{name}" for name, part in buckets.items() if not part["ok"]]
    return {
        "status": "ok" if not failing else "fail",
        "failing": failing,
        "database": database,
        "broker": broker,
        "buckets": buckets,
    }
