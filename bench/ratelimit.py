#!/usr/bin/env python
"""Portal-link rate limiter benchmark, run by hand (not part of the test suite):

    .venv/bin/python bench/ratelimit.py [--calls 2000] [--rounds 7] [--redis-url redis://127.0.0.1:6379/1]

Old (Django's cache: RedisCache.incr, DatabaseCache.incr/add, as links.py did)
against new (shares/ratelimit.py: one EVALSHA on Redis, one upsert in the
database), per visit, in one process, interleaved for `--rounds` rounds; figures
are medians of µs per visit, ratios new/old from the same run.

- database: on DATABASE_URL (default: a fresh SQLite file, the embedded default),
  each visit's transaction as links.py runs it: the limiter plus the conditional
  download UPDATE, in transaction.atomic(). "marginal" subtracts the same
  transaction without a limiter (measured in the same rounds).
- redis: on --redis-url (default CACHE_URL, else redis://127.0.0.1:6379/1), keys
  under a prefix of the run's own, deleted afterwards. Baseline: one PING.

Two traffic shapes: "hot" (one IP, every visit after the first updates its
counter) and "spread" (a new IP per visit, every visit creates a counter).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="visits per scenario per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis-url", default=os.environ.get("CACHE_URL") or "redis://127.0.0.1:6379/1")
    return parser.parse_args()


def old_limiter(cache):
    """links._rate_limited before shares/ratelimit.py, on a given Django cache."""

    def hit(ip: str) -> int:
        window = int(time.time() // 60)
        cache_key = f"s-link-rate:{ip}:{window}"
        try:
            return cache.incr(cache_key)
        except ValueError:
            return 1 if cache.add(cache_key, 1, timeout=90) else cache.incr(cache_key)

    return hit


def measure(scenarios: dict, calls: int, rounds: int) -> dict[str, float]:
    """Median µs per call of each scenario, interleaved round by round."""
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    for _ in range(rounds):
        for name, run in scenarios.items():
            started = time.perf_counter()
            run(calls)
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    args = parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-ratelimit-"))
    os.environ.update({"PORTAL_DATA_DIR": str(data_dir), "PORTAL_DEMO": "false", "LOG_LEVEL": "WARNING",
                       "DJANGO_SETTINGS_MODULE": "portal.settings"})
    os.environ.pop("CACHE_URL", None)  # the database run uses the DatabaseCache; Redis is configured below
    try:
        import django

        django.setup()
        from django.core.cache import caches
        from django.core.management import call_command
        from django.db import connection, transaction
        from django.test import override_settings
        from django.utils import timezone

        from shares import fastsql, ratelimit
        from shares.models import Share

        call_command("migrate", verbosity=0)
        share = Share.objects.create(bucket_name="bench", key="k", expires_in=86400, created_by_name="bench",
                                     requested_expires_at=timezone.now() + timedelta(days=1),
                                     expires_at=timezone.now() + timedelta(days=1))
        now = timezone.now()
        counter = iter(range(10**12))
        run_id = uuid.uuid4().hex[:8]

        def spread_ip() -> str:
            n = next(counter)
            return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}-{run_id}"

        # --- database ---------------------------------------------------------------------------
        old_db = old_limiter(caches["default"])

        def visits(limiter, ip_of):
            def run(calls: int) -> None:
                for _ in range(calls):
                    with transaction.atomic():
                        if limiter is not None:
                            limiter(ip_of())
                        fastsql.count_download(share.pk, now)
            return run

        hot_ip = f"127.0.0.1-{run_id}"
        db_results = measure({
            "no limiter": visits(None, lambda: hot_ip),
            "old hot": visits(old_db, lambda: hot_ip),
            "new hot": visits(ratelimit.hit, lambda: hot_ip),
            "old spread": visits(old_db, spread_ip),
            "new spread": visits(ratelimit.hit, spread_ip),
        }, args.calls, args.rounds)
        vendor = "PostgreSQL" if connection.vendor == "postgresql" else f"SQLite {connection.Database.sqlite_version}"
        print(f"database ({vendor}; DatabaseCache → LinkRateCounter), {args.rounds} rounds × {args.calls} visits, "
              f"median µs per visit transaction (limiter + download UPDATE):")
        base = db_results["no limiter"]
        print(f"  {'no limiter':12s} {base:8.1f} µs")
        for shape in ("hot", "spread"):
            old, new = db_results[f"old {shape}"], db_results[f"new {shape}"]
            print(f"  {shape:6s} old {old:8.1f} µs  new {new:8.1f} µs  total new/old {new / old:5.2f}×   "
                  f"limiter alone: old {old - base:7.1f} µs  new {new - base:7.1f} µs  "
                  f"new/old {(new - base) / (old - base):5.2f}×")

        # --- redis --------------------------------------------------------------------------------
        prefix = f"bench-ratelimit-{run_id}"
        config = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                              "LOCATION": args.redis_url, "KEY_PREFIX": prefix}}
        with override_settings(CACHES=config):
            cache = caches["default"]
            old_redis = old_limiter(cache)
            client = ratelimit._counter().client  # the limiter's own long-lived client

            def loop(limiter, ip_of):
                def run(calls: int) -> None:
                    for _ in range(calls):
                        limiter(ip_of())
                return run

            try:
                client.ping()
            except Exception as exc:  # noqa: BLE001
                print(f"redis: not measured ({args.redis_url.split('@')[-1]} unreachable: {exc})")
                return 0
            redis_results = measure({
                "PING": lambda calls: [client.ping() for _ in range(calls)],
                "old hot": loop(old_redis, lambda: hot_ip),
                "new hot": loop(ratelimit.hit, lambda: hot_ip),
                "old spread": loop(old_redis, spread_ip),
                "new spread": loop(ratelimit.hit, spread_ip),
            }, args.calls, args.rounds)
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i:i + 1000])
        ping = redis_results["PING"]
        print(f"redis ({args.redis_url.split('@')[-1]}), {args.rounds} rounds × {args.calls} visits, median µs per visit:")
        print(f"  {'PING':12s} {ping:8.1f} µs  (one round trip)")
        for shape in ("hot", "spread"):
            old, new = redis_results[f"old {shape}"], redis_results[f"new {shape}"]
            print(f"  {shape:6s} old {old:8.1f} µs ({old / ping:4.2f}× PING)  new {new:8.1f} µs ({new / ping:4.2f}× PING)"
                  f"  new/old {new / old:5.2f}×")
        return 0
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
