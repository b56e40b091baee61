"""50 share creations at once against a live PostgreSQL database (run in a
subprocess by tests/test_audit_concurrency.py): each thread has its own
connection. Prints one JSON line: shares, creation events, verify report."""
from __future__ import annotations

import json
import os
import sys
import threading
from datetime import timedelta

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils import timezone

    from shares import audit, housekeeping, services
    from shares.models import AuditEvent, Bucket, Grant, Share

    bucket_name, endpoint, region, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    bucket = Bucket.objects.create(name=bucket_name, region=region, endpoint_url=endpoint)
    user = User.objects.create_user("racer", "racer@example.com", "x-" * 20)
    Grant.objects.create(bucket=bucket, user=user)
    barrier = threading.Barrier(count)
    errors: list[str] = []

    def create(i: int) -> None:
        try:
            barrier.wait(30)
            services.share_create(user=user, bucket_name=bucket_name, key=f"race/{i}.txt", expires_in=3600,
                                  kind="portal" if i % 2 else "direct")
        except Exception as exc:  # reported, not swallowed
            errors.append(f"{i}: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Seal as if two periods later, so the race's period is closed; then verify.
    later = timezone.now() + timedelta(minutes=2 * 60 + 10)
    housekeeping.seal_audit(now=later)
    report = housekeeping.verify_audit(now=later)
    print(json.dumps({
        "errors": errors,
        "shares": Share.objects.count(),
        "events": AuditEvent.objects.filter(action=audit.SHARE_CREATED).count(),
        "distinct_event_shares": AuditEvent.objects.filter(action=audit.SHARE_CREATED)
        .values("share_id").distinct().count(),
        "verify_ok": report.ok, "sealed_events": report.events, "chain_errors": report.chain_errors,
    }))


if __name__ == "__main__":
    main()
