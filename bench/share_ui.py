#!/usr/bin/env python
"""Share UI benchmark, run by hand (not part of the test suite):

    .venv/bin/python bench/share_ui.py [--repeat 200] [--shares 5000]

In one process, on a scratch SQLite database and a nanio server (which signs and
verifies like S3), through the whole Django stack (Test Client, middleware,
templates), it times the share UI's pages against a trivial signed-in JSON view
(/api/me) measured in the same run, interleaved:

- GET /share/new (the form), POST /share/new (a portal link: service, audit
  event, redirect), POST /share/new (a direct link, rendered from the POST);
- GET /shares/<id>/ (the result page) and /shares/<id>/qr.svg (segno SVG);
- GET /shares/ (My shares: a page of 25 of --shares rows, each portal URL
  recomputed with an HMAC).

Prints median milliseconds and the ratio to the baseline (lower is better)."""
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--shares", type=int, default=5000)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="bench-shareui-")
    os.environ.update({"PORTAL_DATA_DIR": data_dir, "DJANGO_SETTINGS_MODULE": "portal.settings",
                       "LOG_LEVEL": "WARNING"})
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("AWS_PROFILE", None)

    from shares.local_s3 import LocalS3

    server = LocalS3(Path(data_dir) / "nanio").start()
    os.environ.update(server.aws_env())
    try:
        run(args, server)
    finally:
        server.stop()


def run(args: argparse.Namespace, server) -> None:
    import django

    django.setup()
    import datetime as dt
    import secrets

    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from shares.models import AuditEvent, Bucket, Grant, Share

    call_command("migrate", verbosity=0)
    server.client().create_bucket(Bucket="bench")
    server.client().put_object(Bucket="bench", Key="reports/q3 numbers.txt", Body=b"numbers")
    bucket = Bucket.objects.create(name="bench", region=server.region, endpoint_url=server.endpoint_url)
    user = User.objects.create_user("bench", "bench@example.com", "bench-password-123")
    team = Group.objects.create(name="Bench")
    user.groups.add(team)
    Grant.objects.create(bucket=bucket, group=team, prefix="")
    now = timezone.now()
    Share.objects.bulk_create([
        Share(bucket=bucket, bucket_name="bench", key=f"k/{i}", kind="portal", created_by=user,
              created_by_name="bench", created_at=now - dt.timedelta(seconds=i), expires_in=86400,
              requested_expires_at=now + dt.timedelta(days=1), expires_at=now + dt.timedelta(days=1),
              token_nonce=secrets.token_urlsafe(32), token_digest=secrets.token_hex(32))
        for i in range(args.shares)
    ], batch_size=1000)

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    new_url = "/share/new?bucket=bench&key=reports%2Fq3%20numbers.txt"
    share_id = Share.objects.order_by("-created_at").first().pk
    created = {"portal": 0, "direct": 0}

    def expect(status, content=None):
        def check(response):
            assert response.status_code == status, (response.status_code, response.content[:300])
            if content:
                assert content in response.content
        return check

    def post(kind):
        def go():
            response = client.post(new_url, {"expiry": "3600", "kind": kind, "custom_unit": "seconds"})
            created[kind] += 1
            return response
        return go

    cases = {
        "baseline GET /api/me": (lambda: client.get("/api/me"), expect(200)),
        "GET /share/new": (lambda: client.get(new_url), expect(200, b"Create link")),
        "POST /share/new portal": (post("portal"), expect(302)),
        "POST /share/new direct": (post("direct"), expect(200, b"X-Amz-Signature")),
        "GET /shares/<id>/": (lambda: client.get(f"/shares/{share_id}/"), expect(200, b"Copy link")),
        "GET /shares/<id>/qr.svg": (lambda: client.get(f"/shares/{share_id}/qr.svg"), expect(200, b"<svg")),
        f"GET /shares/ (25 of {args.shares:,})": (lambda: client.get("/shares/"), expect(200, b"Revoke")),
    }
    events_before = AuditEvent.objects.filter(action="share.created").count()
    for fn, check in cases.values():  # warm up: templates, clients, connections
        check(fn())
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, (fn, check) in cases.items():
            start = time.perf_counter()
            response = fn()
            timings[name].append(time.perf_counter() - start)
            check(response)
    events = AuditEvent.objects.filter(action="share.created").count() - events_before

    base = statistics.median(timings["baseline GET /api/me"])
    print(f"{args.repeat} interleaved runs each, medians (SQLite, nanio, Django test Client):")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"  {name:<32} {median * 1000:7.2f} ms   {median / base:5.2f}× baseline")
    total = created["portal"] + created["direct"]
    print(f"shares created: {total}, share.created audit events: {events} "
          f"({'exactly one each' if events == total else 'MISMATCH'})")


if __name__ == "__main__":
    main()
