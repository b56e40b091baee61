"""Audit log benchmark (by hand, PostgreSQL; never part of the test suite).

    .venv/bin/python bench/audit.py [--events 1000000] [--server postgres://postgres@127.0.0.1:5432]

Creates a scratch database, seeds N events with generate_series (spread over
500 days, so ~27% are older than the 365-day retention), then measures:
- the first audit page and filtered pages (p50/p95 over repeated GETs through
  the whole Django stack: middleware, view, template);
- CSV export rate and peak Python memory (tracemalloc) at 10k, 100k and all
  rows, with the ratio against the 10k baseline (flat means ≈1×);
- the retention purge: rows/s and its longest single transaction;
- share-creation p99 while a purge runs vs without (baseline in the same run).
Drops the scratch database at the end."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    import psycopg

    name = f"audit_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = f"{args.server}/{name}"
    os.environ["PORTAL_DATA_DIR"] = str(ROOT / "var" / "bench-audit")
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ.setdefault("AUDIT_RETENTION_DAYS", "365")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    s3_dir = tempfile.TemporaryDirectory()
    try:
        run(args, s3_dir.name)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{args.server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        s3_dir.cleanup()


def run(args, s3_dir: str) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, connections
    from django.test import Client
    from django.test.utils import setup_test_environment

    from shares import housekeeping, services
    from shares.local_s3 import LocalS3
    from shares.models import AuditEvent, Bucket, Grant

    setup_test_environment()  # the test client's "testserver" host
    call_command("migrate", verbosity=0)
    n = args.events
    users = [User.objects.create_user(f"user{i}", f"user{i}@example.com", "x" * 20) for i in range(20)]
    admin = User.objects.create_superuser("admin", "admin@example.com", "x" * 20)
    first_user_id = users[0].id

    print(f"== seeding {n:,} events (generate_series, 500 days)")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO shares_auditevent (created_at, actor_id, actor_name, action, bucket, key, share_id, ip,
                                           user_agent, details)
            SELECT now() - ((%(n)s - g) * (500 * 86400.0 / %(n)s)) * interval '1 second',
                   %(uid)s + g %% 20, 'user' || (g %% 20),
                   (ARRAY['share.created','link.visited','link.visited','link.visited','share.revoked',
                          'auth.login','access.denied'])[1 + g %% 7],
                   'bucket-' || (g %% 5), 'team-' || (g %% 10) || '/file-' || g || '.bin', g / 3,
                   ('10.0.' || (g %% 250) || '.' || (g %% 200 + 1))::inet, 'Mozilla/5.0 (bench)',
                   jsonb_build_object('outcome', 'redirected')
            FROM generate_series(1, %(n)s) AS g
            """,
            {"n": n, "uid": first_user_id},
        )
        cursor.execute("ANALYZE shares_auditevent")
    print(f"   seeded in {time.perf_counter() - started:.1f} s")

    client = Client()
    client.force_login(admin)

    print("== audit page (whole Django stack), p50 / p95 over", args.repeat, "requests; target p50 ≤ 100 ms")
    pages = {
        "first page": "/audit/",
        "page 20 (keyset)": None,
        "user filter": "/audit/?user=user3",
        "action filter": "/audit/?action=share.created",
        "user+action": "/audit/?user=user3&action=share.revoked",
        "bucket+prefix": "/audit/?bucket=bucket-2&prefix=team-7/",
        "date range": "/audit/?date_from=2026-01-01&date_to=2026-01-07",
        "key contains": "/audit/?q=file-4242",
    }
    top = AuditEvent.objects.order_by("-id").values_list("id", flat=True)[1000]
    pages["page 20 (keyset)"] = f"/audit/?before={top}"
    results = {}
    for label, url in pages.items():
        client.get(url)  # warm
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        results[label] = (statistics.median(times), pct(times, 95))
        print(f"   {label:18s} p50 {results[label][0]:7.1f} ms   p95 {results[label][1]:7.1f} ms   "
              f"(×{results[label][0] / results['first page'][0]:.2f} of first page)")

    print("== CSV export: rate and peak Python memory (tracemalloc)")
    all_ids = AuditEvent.objects.order_by("id").values_list("id", flat=True)
    csv_base = None
    for rows in (10_000, 100_000, n):
        # A date range that selects about `rows` events (events are evenly spread).
        newest = AuditEvent.objects.order_by("-id").values_list("created_at", flat=True).first()
        span_days = 500 * rows / n
        from datetime import timedelta

        start = (newest - timedelta(days=span_days)).date() if rows < n else None
        url = "/audit/export.csv" + (f"?date_from={start.isoformat()}" if start else "")
        t = time.perf_counter()
        count = sum(chunk.count(b"\n") for chunk in client.get(url).streaming_content)
        elapsed = time.perf_counter() - t
        tracemalloc.start()
        for _ in client.get(url).streaming_content:
            pass
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        csv_base = csv_base or peak
        print(f"   {count - 1:>9,} rows: {count / elapsed:>9,.0f} rows/s, peak {peak / 1e6:6.2f} MB "
              f"(×{peak / csv_base:.2f} of the 10k baseline)")
    del all_ids

    print("== share creation p99, without and during a purge")
    local = LocalS3(Path(s3_dir)).start()
    os.environ.update(local.aws_env())
    s3 = local.client()
    s3.create_bucket(Bucket="bench")
    for i in range(300):
        s3.put_object(Bucket="bench", Key=f"f/{i}.txt", Body=b"x")
    bucket = Bucket.objects.create(name="bench", region=local.region, endpoint_url=local.endpoint_url)
    Grant.objects.create(bucket=bucket, user=users[0])

    def create_shares(count: int, offset: int) -> list[float]:
        times = []
        for i in range(count):
            t = time.perf_counter()
            services.share_create(user=users[0], bucket_name="bench", key=f"f/{(offset + i) % 300}.txt",
                                  expires_in=3600, kind="portal")
            times.append((time.perf_counter() - t) * 1000)
        return times

    create_shares(20, 0)  # warm
    baseline = create_shares(300, 0)
    purge_stats = {}

    from django.utils import timezone as dj_timezone

    purge_now = dj_timezone.now()  # the second run uses the same instant: nothing new has aged out

    def purge() -> None:
        t = time.perf_counter()
        result = housekeeping.purge_audit(now=purge_now)
        purge_stats.update(count=result.count, seconds=time.perf_counter() - t,
                           longest=result.longest_batch_seconds, batches=result.batches)
        connections.close_all()

    purger = threading.Thread(target=purge)
    purger.start()
    during = []
    while purger.is_alive():
        during += create_shares(10, len(during))
    purger.join()
    b99, d99 = pct(baseline, 99), pct(during, 99)
    print(f"   without purge: p50 {statistics.median(baseline):.1f} ms, p99 {b99:.1f} ms ({len(baseline)} shares)")
    print(f"   during purge:  p50 {statistics.median(during):.1f} ms, p99 {d99:.1f} ms ({len(during)} shares)"
          f"  → ×{d99 / b99:.2f} (target ≤ 2×)")
    print("== purge (retention 365 days)")
    print(f"   {purge_stats['count']:,} rows in {purge_stats['seconds']:.1f} s = "
          f"{purge_stats['count'] / purge_stats['seconds']:,.0f} rows/s; {purge_stats['batches']} batches; "
          f"longest transaction {purge_stats['longest'] * 1000:.0f} ms")
    t = time.perf_counter()
    again = housekeeping.purge_audit(now=purge_now)
    print(f"   second run: {again.count} rows in {(time.perf_counter() - t) * 1000:.0f} ms")

    print("== sealing and verifying what is left")
    t = time.perf_counter()
    from datetime import timedelta

    from django.utils import timezone

    seals = housekeeping.seal_audit(now=timezone.now() + timedelta(hours=2))
    sealed = time.perf_counter() - t
    t = time.perf_counter()
    report = housekeeping.verify_audit(now=timezone.now() + timedelta(hours=2))
    print(f"   sealed {sum(s.event_count for s in seals):,} events in {len(seals)} seals: {sealed:.1f} s; "
          f"verified in {time.perf_counter() - t:.1f} s: {'OK' if report.ok else 'FAILED'}")
    local.stop()


if __name__ == "__main__":
    main()
