#!/usr/bin/env python
"""Browsing benchmark, run by hand (not part of the test suite):

    .venv/bin/python bench/browse.py [--repeat 30] [--small 1000] [--big 100000] [--as-shipped]

Against one in-memory moto S3 (ThreadedMotoServer, in this process) holding a
folder of `--small` objects and one of `--big` objects, it measures

1. the portal's folder page (Django test Client, signed in, full middleware and
   template) vs a raw boto3 list_objects_v2 call for the same page — target ≤ 1.25×;
2. the portal's first page of the big folder vs the small folder — target ≤ 1.1×.

The baseline is a plain boto3 client. The portal's own client (shares/s3.py)
parses S3's ISO-8601 timestamps with datetime.fromisoformat instead of
dateutil; "portal client" shows that same call on it, so both are visible.

moto's own listing scans and sorts every key of the bucket on each call (O(n)),
which real S3 does not. Unless --as-shipped is given, the bench swaps in an
indexed listing (bisect over a sorted key list, same results and tokens) so that
ratio 2 measures the portal, not moto. Every figure is a median of `--repeat`
interleaved runs measured in the same process, against the same server.
"""
from __future__ import annotations

import argparse
import bisect
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--as-shipped", action="store_true", help="keep moto's O(n) listing")
    return parser.parse_args()


def index_moto_listing() -> None:
    """Replace moto's list_objects_v2 (scan + sort of the whole bucket per call)
    with a bisect over a sorted key list, cached per bucket until it changes."""
    from moto.utilities.utils import md5_hash
    from moto.s3.models import S3Backend

    cache: dict[int, tuple[int, list[str]]] = {}

    def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
        count = len(bucket.keys)
        cached = cache.get(id(bucket))
        if cached is None or cached[0] != count:
            cached = (count, sorted(bucket.keys.keys()))
            cache[id(bucket)] = cached
        names = cached[1]
        prefix = prefix or ""
        limit = self._pagination_tokens.get(continuation_token) if continuation_token else start_after
        i = bisect.bisect_right(names, limit) if limit else bisect.bisect_left(names, prefix)
        i = max(i, bisect.bisect_left(names, prefix))
        results: list = []
        truncated = False
        while i < len(names) and names[i].startswith(prefix):
            name = names[i]
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter, 1)[0] + delimiter
                # Skip every key under this folder in one jump.
                i = bisect.bisect_left(names, folder[:-1] + chr(ord(delimiter) + 1))
                if limit and folder <= limit:
                    continue
                item = folder
            else:
                item = bucket.keys[name]
                i += 1
            if len(results) == max_keys:
                truncated = True
                break
            results.append(item)
        token = None
        if truncated and results:
            last = results[-1] if isinstance(results[-1], str) else results[-1].name
            token = md5_hash(last.encode("utf-8")).hexdigest()
            self._pagination_tokens[token] = last
        return results, truncated, token

    S3Backend.list_objects_v2 = list_objects_v2


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: portal, boto3 and moto's thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    args = parse_args()
    data_dir = tempfile.mkdtemp(prefix="bench-browse-")
    os.environ.update({
        "PORTAL_DATA_DIR": data_dir,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("DATABASE_URL", None)

    import django

    django.setup()
    import logging

    logging.disable(logging.WARNING)  # werkzeug prints a line per request
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.test import Client
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    from shares import s3
    from shares.local_s3 import free_port
    from shares.models import Bucket, Grant

    call_command("migrate", verbosity=0)
    if not args.as_shipped:
        index_moto_listing()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        bucket = Bucket.objects.create(name="bench", region="us-east-1", endpoint_url=endpoint)
        config = s3.BucketConfig.from_bucket(bucket)
        import boto3
        from botocore.config import Config

        # The baseline: a plain boto3 client, as a script would make one, against
        # the same server with the same credentials.
        raw = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                           config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        portal_client = s3.client_for(config)  # the portal's own cached client (fast timestamp parser)
        raw.create_bucket(Bucket="bench")
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        started = time.perf_counter()
        for folder, count in (("small/", args.small), ("big/", args.big)):
            for i in range(count):
                backend.put_object("bench", f"{folder}file-{i:07d}.bin", b"x" * (i % 4096))
        print(f"seeded {args.small:,} + {args.big:,} objects in {time.perf_counter() - started:.1f} s "
              f"(moto listing: {'as shipped, O(n)' if args.as_shipped else 'indexed'})")

        # A staff member with a group grant, as most users are (a superuser would
        # skip the grant query).
        user = User.objects.create_user("bench", "bench@example.com", "bench-password-123")
        team = Group.objects.create(name="Bench")
        user.groups.add(team)
        Grant.objects.create(bucket=bucket, group=team, prefix="")
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)

        def portal(folder: str):
            def run():
                response = client.get(f"/browse/bench/{folder}")
                assert response.status_code == 200, response.status_code
                assert response.content.count(b'class="browse-file"') == args.page_size
            return run

        def boto(folder: str, client=raw):
            def run():
                page = client.list_objects_v2(Bucket="bench", Prefix=folder, Delimiter="/", MaxKeys=args.page_size)
                assert len(page["Contents"]) == args.page_size
            return run

        def home():
            assert client.get("/").status_code == 200

        cases = {
            "raw small": boto("small/"), "portal small": portal("small/"),
            "raw big": boto("big/"), "portal big": portal("big/"),
            # The floor: the home page (one query, no S3) through the same
            # middleware, session, context processors and base template.
            "home page": home,
            # For transparency: the same call on the portal's own client.
            "portal client": boto("small/", portal_client),
        }
        for fn in cases.values():  # warm up: clients, templates, caches
            for _ in range(3):
                fn()
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, fn in cases.items():
                samples[name].append(timed(fn))

        def report(label: str, index: int) -> None:
            median = {name: statistics.median(v[index] for v in values) * 1000 for name, values in samples.items()}
            print(f"\n{label}: median of {args.repeat} interleaved runs, page size {args.page_size} (ms)")
            for name, value in median.items():
                print(f"  {name:<13} {value:8.2f}")
            r1s = median["portal small"] / median["raw small"]
            r1b = median["portal big"] / median["raw big"]
            r2 = median["portal big"] / median["portal small"]
            r2raw = median["raw big"] / median["raw small"]
            print(f"  portal page / raw list_objects_v2, {args.small:>7,} objects: {r1s:5.2f}x  (target <= 1.25x)")
            print(f"  portal page / raw list_objects_v2, {args.big:>7,} objects: {r1b:5.2f}x  (target <= 1.25x)")
            print(f"  portal first page, {args.big:,} vs {args.small:,} objects:   {r2:5.2f}x  (target <= 1.10x)")
            print(f"  (raw list_objects_v2, {args.big:,} vs {args.small:,} objects: {r2raw:5.2f}x: the server's share)")
            print(f"  portal overhead (portal - raw): {median['portal small'] - median['raw small']:.2f} ms small, "
                  f"{median['portal big'] - median['raw big']:.2f} ms big; "
                  f"of which the request floor (home page): {median['home page']:.2f} ms")

        report("wall clock", 0)
        # On a shared machine wall time swings with other load; CPU time of
        # this one process (client, portal and moto together) is steadier.
        report("CPU time", 1)
        print(f"\nload average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
