#!/usr/bin/env python
"""Presign benchmark, run by hand (not part of the test suite):

    .venv/bin/python bench/presign.py [--calls 2000] [--rounds 9] [--requests 200]

One process, no network (signing is local), example AWS keys. Two sections,
each compared within the same run:

1. One presigned GET URL. "botocore" is what shares.s3.presign_get() did before
   the local signer (and still does as its fallback: the disposition, the cached
   client, botocore's generate_presigned_url, the aws-cli query order); "local" is
   presign_get() as it is (shares/sigv4.py's verified template). Several bucket
   configurations and keys; every local URL is first checked to be byte for
   byte botocore's at a frozen instant. Median µs per call over `--rounds`
   interleaved rounds of `--calls` calls.
2. The requests that sign, through the whole Django stack (test Client, scratch
   SQLite): a portal link visit (GET /s/<token>, 302) and a direct-link creation
   (POST /api/shares), each signed by botocore and by the local signer, and the
   trivial signed-in view GET /api/me. CPU time of this process per request
   (time.process_time, so other load on the machine counts little), median
   over `--rounds` interleaved rounds of `--requests` requests; "vs /api/me"
   is /api/me's cost divided by the request's (as bench/share.py's req/s ratios).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="presign calls per scenario per round")
    parser.add_argument("--requests", type=int, default=200, help="requests per scenario per round")
    parser.add_argument("--rounds", type=int, default=9)
    return parser.parse_args()


def presign_section(args: argparse.Namespace) -> bool:
    import time_machine

    from shares import s3

    def before(config: s3.BucketConfig, key: str, expires_in: int) -> str:
        # presign_get() as it was: every call through botocore.
        if not 1 <= expires_in <= s3.WEEK:
            raise ValueError(expires_in)
        disposition = s3.content_disposition(key)
        client = s3.client_for(config, public=True)
        return s3._botocore_presign(client, config.name, key, expires_in, disposition)  # noqa: SLF001

    def after(config: s3.BucketConfig, key: str, expires_in: int) -> str:
        return s3.presign_get(config, key, expires_in=expires_in)

    configs = {
        "AWS virtual host (cn-northwest-1)": s3.BucketConfig(name="newtestout", region="cn-northwest-1"),
        "AWS path style (dotted, us-east-1)": s3.BucketConfig(name="my.bucket", region="us-east-1"),
        "custom endpoint, public endpoint": s3.BucketConfig(name="files", endpoint_url="http://minio.internal:9000",
                                                            public_endpoint_url="https://files.example.com"),
    }
    keys = {"short key": "reports/q1 report.pdf", "1 KB non-ASCII key": "dossier/" + "é" * 508}
    scenarios = [(f"{cname}, {kname}", config, key) for cname, config in configs.items() for kname, key in keys.items()]

    with time_machine.travel("2026-06-13 05:36:28Z", tick=False):
        for name, config, key in scenarios:
            if after(config, key, 60) != before(config, key, 60):
                print(f"local URL differs from botocore's for {name}", file=sys.stderr)
                return False
            if s3._presigners[config][1] is None:  # noqa: SLF001
                print(f"the local signer is not in use for {name}", file=sys.stderr)
                return False

    costs: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, config, key in scenarios:
            for label, sign in (("botocore", before), ("local", after)):
                started = time.perf_counter()
                for _ in range(args.calls):
                    sign(config, key, 60)
                costs.setdefault((name, label), []).append((time.perf_counter() - started) / args.calls * 1e6)

    print(f"1. presigned GET, µs per call, median of {args.rounds} rounds × {args.calls} calls "
          "(ratio: local cost / botocore cost, same run):")
    ratios = []
    for name, _, _ in scenarios:
        slow = statistics.median(costs[(name, "botocore")])
        fast = statistics.median(costs[(name, "local")])
        ratios.append(fast / slow)
        print(f"  {name:56s} botocore {slow:8.1f}  local {fast:6.1f}  ratio {fast / slow:.3f}")
    print(f"  median ratio {statistics.median(ratios):.3f}")
    return True


def request_section(args: argparse.Namespace) -> bool:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from shares import s3, services
    from shares.models import Bucket, Grant

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    key = "reports/q1 report.pdf"
    # Nothing below reaches the endpoint: visits and direct links only sign.
    bucket = Bucket.objects.create(name="bench-bucket", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    user = User.objects.create_user("bench", password="bench-password-123456")
    Grant.objects.create(bucket=bucket, user=user, prefix="", can_share=True)
    links = [services.share_create(user=user, bucket_name=bucket.name, key=key, expires_in=86400).url
             for _ in range(50)]
    paths = ["/s/" + url.rsplit("/s/", 1)[1] for url in links]
    web = Client()
    web.force_login(user)
    visitor = Client()
    body = json.dumps({"bucket": bucket.name, "key": key, "expires_in": 3600, "kind": "direct"})
    counter = iter(range(10**12))

    def visit() -> int:
        return visitor.get(paths[next(counter) % len(paths)]).status_code

    def direct() -> int:
        return web.post("/api/shares", body, content_type="application/json").status_code

    def me() -> int:
        return web.get("/api/me").status_code

    def by_botocore(request):
        def run() -> int:
            with mock.patch.object(s3, "_fast_presign", lambda *args: None):
                return request()
        return run

    def locally(request):
        def run() -> int:
            with mock.patch.object(s3, "_fast_presign", s3._fast_presign):  # noqa: SLF001 – same patch cost
                return request()
        return run

    me_name = "GET /api/me (signed in)"
    scenarios = {
        me_name: (me, 200),
        "GET /s/<token>, botocore signs": (by_botocore(visit), 302),
        "GET /s/<token>, local signer": (locally(visit), 302),
        "POST /api/shares direct, botocore signs": (by_botocore(direct), 201),
        "POST /api/shares direct, local signer": (locally(direct), 201),
    }
    for request, expect in scenarios.values():  # warm up every path
        for _ in range(20):
            if request() != expect:
                print(f"unexpected answer to a warm-up request (expected {expect})", file=sys.stderr)
                return False
    costs: dict[str, list[float]] = {name: [] for name in scenarios}
    for _ in range(args.rounds):
        for name, (request, expect) in scenarios.items():
            started = time.process_time()
            for _ in range(args.requests):
                if request() != expect:
                    print(f"unexpected answer for {name}", file=sys.stderr)
                    return False
            costs[name].append((time.process_time() - started) / args.requests * 1e3)

    medians = {name: statistics.median(values) for name, values in costs.items()}
    print(f"2. whole requests (Django test Client, SQLite), CPU ms per request, median of {args.rounds} rounds × "
          f"{args.requests} requests:")
    for name, cost in medians.items():
        line = f"  {name:42s} {cost:6.3f} ms"
        if name != me_name:
            line += f"   vs /api/me {medians[me_name] / cost:.2f}×"
        print(line)
    for what in ("GET /s/<token>", "POST /api/shares direct"):
        local, slow = medians[f"{what}, local signer"], medians[f"{what}, botocore signs"]
        print(f"  {what}: local signer costs {local / slow:.2f}× the botocore-signed request")
    return True


def main() -> int:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-presign-"))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_DATA_DIR": str(scratch), "PORTAL_DEMO": "false",
        "ALLOWED_HOSTS": "testserver", "CELERY_BROKER_URL": "filesystem://", "LOG_LEVEL": "WARNING",
        "PORTAL_LINK_RATE_LIMIT": "1000000000",  # one client drives every visit here
        # Example keys: signing needs no real account.
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    })
    for name in ("DATABASE_URL", "CACHE_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CREDENTIAL_EXPIRATION"):
        os.environ.pop(name, None)
    try:
        import django

        django.setup()
        ok = presign_section(args)
        return 0 if ok and request_section(args) else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
