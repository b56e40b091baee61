"""/healthz cost, by hand: `.venv/bin/python bench/health.py [--repeat 200] [--buckets 5]`.

One process, a scratch SQLite database and a real nanio, the whole Django stack
through the test Client. Every case is compared with a baseline measured in the
same run: `GET /accounts/login/` (an anonymous page that renders a template).
Cases: /healthz with bucket probes cached (the steady state), /healthz with the
probe cache cleared before each request (what an attacker hammering /healthz
would cost S3 without the cache), and /healthz with a dead Redis broker.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--buckets", type=int, default=5)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-health-"))
    os.environ.update(PORTAL_DATA_DIR=str(scratch), DJANGO_SETTINGS_MODULE="portal.settings",
                      ALLOWED_HOSTS="testserver", CELERY_BROKER_URL="filesystem://")
    os.environ.pop("DATABASE_URL", None)
    from shares.local_s3 import LocalS3

    server = LocalS3(scratch / "s3").start()
    os.environ.update(server.aws_env())
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client, override_settings

        from shares import health
        from shares.models import Bucket

        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        client = server.client()
        for number in range(args.buckets):
            name = f"bench-{number:03d}"
            client.create_bucket(Bucket=name)
            Bucket.objects.create(name=name, region=server.region, endpoint_url=server.endpoint_url)
        web = Client()

        def timed(path: str, before=None) -> float:
            if before:
                before()
            started = time.perf_counter()
            response = web.get(path)
            elapsed = time.perf_counter() - started
            assert response.status_code in (200, 503), response.status_code
            return elapsed

        cases = {
            "baseline GET /accounts/login/": lambda: timed("/accounts/login/"),
            f"GET /healthz, {args.buckets} buckets, probes cached": lambda: timed("/healthz"),
            f"GET /healthz, {args.buckets} buckets, probes not cached": lambda: timed("/healthz", health.clear_cache),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        samples["GET /healthz, dead Redis broker (503)"] = []
        for name in cases:  # warm up: templates, S3 clients, connections
            cases[name]()
        for _ in range(args.repeat):
            for name, run in cases.items():  # interleaved, so drift hits every case alike
                samples[name].append(run())
            with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
                samples["GET /healthz, dead Redis broker (503)"].append(timed("/healthz"))

        base = statistics.median(samples["baseline GET /accounts/login/"])
        print(f"{'case':<52} {'median':>10} {'p95':>10} {'x baseline':>11}")
        for name, values in samples.items():
            values.sort()
            median, p95 = statistics.median(values), values[int(len(values) * 0.95) - 1]
            print(f"{name:<52} {median * 1000:>8.2f}ms {p95 * 1000:>8.2f}ms {median / base:>10.2f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
