#!/usr/bin/env python
"""Sharing benchmark, run by hand (not part of the test suite):

    .venv/bin/python bench/share.py [--seconds 2] [--rounds 7] [--concurrency 8] [--workers 2] [--threads 4]

Starts nanio and the portal under gunicorn (gthread) on a fresh data folder
(SQLite + the embedded defaults, or DATABASE_URL / CACHE_URL if set: point
DATABASE_URL at an EMPTY database), then drives it over
keep-alive HTTP from client threads:

- baselines: GET /api/me — a trivial signed-in JSON view, same server, once with
            a Bearer token and once with a session cookie;
- create:   POST /api/shares (portal link) — the full share service: grant check,
            validation, Share row + audit event in one transaction (with a token, the
            token's lookup is part of that statement: fastsql.insert_share_by_token);
- direct:   POST /api/shares (direct link) — the same plus local SigV4 signing;
- redirect: GET /s/<token> — rate limit, record check, download count, audit
            event, fresh presigned URL, 302; over many links, and on one hot link.

Scenarios are interleaved for `--rounds` rounds; the figure for each is the
median requests/second over the rounds, and the ratio is against the baseline
measured in the same run. Target: each ≥ 0.6× the baseline, zero errors, and
exactly one share.created audit event per share.

It also prints the CPU time each request costs, split by process (gunicorn's
workers, the PostgreSQL backends serving the bench's database, the load
client), read from /proc around every scenario. On a shared machine that other
work keeps busy, requests/second swing with the load; CPU per request does not,
and on the saturated 2-core machine the throughput ratio follows the inverse of
the CPU ratio.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="per scenario per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--links", type=int, default=50, help="portal links the spread visits go to")
    return parser.parse_args()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_load(port: int, seconds: float, concurrency: int, request, expect: int) -> tuple[int, int]:
    """(completed requests with the expected status, errors) in `seconds`."""
    stop = time.monotonic() + seconds
    ok = [0] * concurrency
    errors = [0] * concurrency

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            method, path, body, headers = request()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status == expect:
                    ok[index] += 1
                else:
                    errors[index] += 1
                    if errors[index] == 1:
                        print(f"  unexpected {response.status} for {method} {path[:40]}", file=sys.stderr)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(ok), sum(errors)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids) -> dict[int, float]:
    """pid -> CPU seconds (user + system) so far, for the pids still alive."""
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return seconds


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings; a process that started in between
    (a new database connection) counts whole. (One that ended in between is
    lost: connections live DB_CONN_MAX_AGE, far longer than a scenario.)"""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _group_pids(pgid: int) -> list[int]:
    """Every process in a process group (gunicorn's master and workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def _database_pids() -> list[int]:
    """The PostgreSQL backends connected to the bench's database (not the
    bench's own connection); none on SQLite, which runs inside the workers."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        return [row[0] for row in cursor.fetchall()]


def main() -> int:
    args = parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-share-"))
    from shares.local_s3 import LocalS3, stop_process_group

    nanio = LocalS3(data_dir / "nanio").start()
    env = dict(os.environ)
    env.update(nanio.aws_env())
    env.update({
        "PORTAL_DATA_DIR": str(data_dir / "portal"),
        "PORTAL_LINK_RATE_LIMIT": "1000000000",  # one client IP drives every request here
        "PORTAL_DEMO": "false",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    })
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(env)
    gunicorn = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        from django.contrib.auth.models import User

        from shares import audit, services, tokens
        from shares.models import AuditEvent, Bucket, Grant, Share

        nanio.client().create_bucket(Bucket="bench-bucket")
        nanio.client().put_object(Bucket="bench-bucket", Key="reports/q1 report.pdf", Body=b"x" * 1024)
        bucket = Bucket.objects.create(name="bench-bucket", region=nanio.region, endpoint_url=nanio.endpoint_url)
        user = User.objects.create_user("bench", password="bench-password-123456")
        Grant.objects.create(bucket=bucket, user=user, prefix="", can_share=True)
        _, token = tokens.create_api_token(user, "bench")
        # Visits spread over many links (as real traffic is), and one hot link
        # (every visit updates the same row: the worst case for the counter).
        links = [services.share_create(user=user, bucket_name="bench-bucket", key="reports/q1 report.pdf",
                                       expires_in=86400) for _ in range(args.links)]
        link_paths = ["/s/" + link.url.rsplit("/s/", 1)[1] for link in links]
        from django.middleware.csrf import _get_new_csrf_string
        from django.test import Client

        signed_in = Client()
        signed_in.force_login(user)
        csrf = _get_new_csrf_string()
        session_cookie = f"sessionid={signed_in.cookies['sessionid'].value}; csrftoken={csrf}"

        port = free_port()
        gunicorn = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
             "-w", str(args.workers), "-k", "gthread", "--threads", str(args.threads), "--keep-alive", "30",
             "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or gunicorn.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)

        auth = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1"}
        session = {"Cookie": session_cookie, "Host": "127.0.0.1"}
        create_body = json.dumps({"bucket": "bench-bucket", "key": "reports/q1 report.pdf", "expires_in": 3600})
        direct_body = json.dumps({"bucket": "bench-bucket", "key": "reports/q1 report.pdf", "expires_in": 3600,
                                  "kind": "direct"})
        json_headers = {**auth, "Content-Type": "application/json"}
        session_json = {**session, "Content-Type": "application/json", "X-CSRFToken": csrf}
        counter = iter(range(10**12))

        def spread_visit():
            return "GET", link_paths[next(counter) % len(link_paths)], None, {"Host": "127.0.0.1"}

        # name: (request, expected status, the baseline it is compared with)
        bearer_base, session_base = "baseline GET /api/me (Bearer)", "baseline GET /api/me (session)"
        scenarios = {
            bearer_base: (lambda: ("GET", "/api/me", None, auth), 200, None),
            session_base: (lambda: ("GET", "/api/me", None, session), 200, None),
            "POST /api/shares portal (Bearer)": (lambda: ("POST", "/api/shares", create_body, json_headers), 201,
                                                 bearer_base),
            "POST /api/shares direct (Bearer)": (lambda: ("POST", "/api/shares", direct_body, json_headers), 201,
                                                 bearer_base),
            "POST /api/shares portal (session)": (lambda: ("POST", "/api/shares", create_body, session_json), 201,
                                                  session_base),
            f"GET /s/<token> ({args.links} links)": (spread_visit, 302, session_base),
            "GET /s/<token> (one hot link)": (lambda: ("GET", link_paths[0], None, {"Host": "127.0.0.1"}), 302,
                                              session_base),
        }
        # Warm up every worker and code path.
        for request, expect, _ in scenarios.values():
            run_load(port, 1.0, args.concurrency, request, expect)
        shares_before = Share.objects.count()
        events_before = AuditEvent.objects.filter(action=audit.SHARE_CREATED).count()

        rates: dict[str, list[float]] = {name: [] for name in scenarios}
        errors: dict[str, int] = {name: 0 for name in scenarios}
        # CPU seconds per scenario: gunicorn, database, client; and requests served.
        cpu: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in scenarios}
        served: dict[str, int] = {name: 0 for name in scenarios}
        created = 0
        for _ in range(args.rounds):
            for name, (request, expect, _) in scenarios.items():
                before = (_cpu_seconds(_group_pids(gunicorn.pid)), _cpu_seconds(_database_pids()),
                          time.process_time())
                started = time.monotonic()
                ok, failed = run_load(port, args.seconds, args.concurrency, request, expect)
                rates[name].append(ok / (time.monotonic() - started))
                after = (_cpu_seconds(_group_pids(gunicorn.pid)), _cpu_seconds(_database_pids()),
                         time.process_time())
                cpu[name][0] += _cpu_used(before[0], after[0])
                cpu[name][1] += _cpu_used(before[1], after[1])
                cpu[name][2] += after[2] - before[2]
                served[name] += ok + failed
                errors[name] += failed
                if name.startswith("POST"):
                    created += ok

        shares_made = Share.objects.count() - shares_before
        events_made = AuditEvent.objects.filter(action=audit.SHARE_CREATED).count() - events_before
        db = "PostgreSQL" if "postgres" in env.get("DATABASE_URL", "") else "SQLite"
        cache_name = "Redis" if env.get("CACHE_URL") else "database"
        print(f"gunicorn gthread {args.workers}×{args.threads}, {args.concurrency} clients, {db}, {cache_name} cache, "
              f"{args.rounds} rounds × {args.seconds:g} s, medians (ratio vs the baseline named):")
        ok_all = True
        for name, (_, _, base) in scenarios.items():
            rate = statistics.median(rates[name])
            if base is None:
                print(f"  {name:36s} {rate:8.1f} req/s          errors {errors[name]}")
                continue
            ratio = rate / statistics.median(rates[base])
            verdict = "ok" if ratio >= 0.6 else "BELOW TARGET 0.6×"
            ok_all &= ratio >= 0.6 and errors[name] == 0
            print(f"  {name:36s} {rate:8.1f} req/s  {ratio:5.2f}×  errors {errors[name]}  vs {base.split('(')[1][:-1]}"
                  f"  {verdict}")
        print("CPU per request, all rounds (ms): gunicorn + database + client = total; ratio of totals vs the baseline")
        per_request = {name: [seconds * 1000 / max(served[name], 1) for seconds in cpu[name]] for name in scenarios}
        for name, (_, _, base) in scenarios.items():
            parts = per_request[name]
            line = f"  {name:36s} {parts[0]:5.2f} + {parts[1]:5.2f} + {parts[2]:5.2f} = {sum(parts):5.2f}"
            if base is not None:
                line += f"  {sum(per_request[base]) / sum(parts):5.2f}×"
            print(line)
        print(f"  shares created {shares_made} (2xx answers {created}), share.created events {events_made}: "
              f"{'exactly one each' if shares_made == events_made == created else 'MISMATCH'}")
        ok_all &= shares_made == events_made == created
        return 0 if ok_all else 1
    finally:
        if gunicorn is not None:
            stop_process_group(gunicorn)
        nanio.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
