"""The portal-link rate limit (shares/ratelimit.py) on both of its counters: the
portal's own database table (embedded default, DatabaseCache) and Redis
(CACHE_URL=redis://…). Every test runs on each counter, on whichever database
this pass uses; the races run in a subprocess with real connections, one per thread."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.parse
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from shares import audit, housekeeping, ratelimit, services, tasks
from shares.models import AuditEvent, LinkRateCounter, Share
from tests.conftest import CI
from tests.separate_database import SeparateDatabase

ROOT = Path(__file__).resolve().parent.parent
# 12:00:59 UTC: one second before a window ends, so the rollover is one travel away.
LAST_SECOND = datetime(2026, 6, 1, 12, 0, 59, tzinfo=dt_timezone.utc)
DATABASE_CACHE = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "portal_cache"}


def _redis_url() -> str:
    """This pass's own Redis cache if it has one, else TEST_REDIS_URL (a local Redis)."""
    configured = django_settings.CACHES["default"]
    if configured["BACKEND"].endswith("RedisCache"):
        return configured["LOCATION"]
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/2")


def _need_redis(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"Redis is not reachable at {host}:{port}"
    if CI:
        pytest.fail(message + " (CI must run this test)")
    pytest.skip(f"REDIS RATE-LIMIT TESTS SKIPPED: {message}")


@pytest.fixture(params=["database", "redis"])
def counter(request):
    """The default cache (hence the counter) each test runs on. Redis keys get a
    prefix of the test's own, so no run sees another's counts."""
    if request.param == "database":
        caches = {"default": DATABASE_CACHE}
    else:
        url = _redis_url()
        _need_redis(url)
        caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                              "KEY_PREFIX": f"test-{uuid.uuid4().hex[:12]}"}}
    with override_settings(CACHES=caches):
        yield request.param


@pytest.fixture
def link(alice, grants, s3_bucket, put_object) -> tuple[str, bytes]:
    body = put_object("report.pdf")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="report.pdf", expires_in=86400)
    return urllib.parse.urlsplit(result.url).path, body


def _rate_limited_events():
    return AuditEvent.objects.filter(action=audit.LINK_VISITED, details__outcome="rate_limited")


# --- the limit ------------------------------------------------------------------------------------

@pytest.mark.django_db
@override_settings(PORTAL_LINK_RATE_LIMIT=3)
def test_it_lets_exactly_the_limit_through_per_ip_and_minute(counter, link, client):
    path, body = link
    with time_machine.travel(LAST_SECOND - timedelta(seconds=30), tick=False):
        responses = [client.get(path) for _ in range(5)]
        assert [r.status_code for r in responses] == [302, 302, 302, 429, 429]
        refused = responses[3]
        assert refused["Retry-After"] == "60"
        assert refused["Cache-Control"] == "no-store" and refused["Referrer-Policy"] == "no-referrer"
        assert Client(REMOTE_ADDR="10.1.2.3").get(path).status_code == 302  # another IP has its own count
    assert Share.objects.get().download_count == 4  # refused visits never count a download
    assert _rate_limited_events().count() == 1  # one event per IP and minute, however long the flood
    event = _rate_limited_events().get()
    assert event.ip == "127.0.0.1" and event.key == "report.pdf"


@pytest.mark.django_db
@override_settings(PORTAL_LINK_RATE_LIMIT=2)
def test_a_new_minute_starts_a_new_count_and_a_new_refusal_event(counter, link, client):
    path, _ = link
    with time_machine.travel(LAST_SECOND, tick=False) as traveller:
        assert [client.get(path).status_code for _ in range(4)] == [302, 302, 429, 429]
        traveller.shift(timedelta(seconds=1))  # 12:01:00, the next window
        assert [client.get(path).status_code for _ in range(4)] == [302, 302, 429, 429]
    assert _rate_limited_events().count() == 2
    assert Share.objects.get().download_count == 4


@pytest.mark.django_db
@override_settings(PORTAL_LINK_RATE_LIMIT=1)
def test_unknown_tokens_count_against_the_limit_too(counter, link, client):
    path, _ = link
    with time_machine.travel(LAST_SECOND - timedelta(seconds=30), tick=False):
        assert client.get("/s/" + "A" * 43).status_code == 404
        assert client.get(path).status_code == 429  # guessing tokens uses up the minute
    assert Share.objects.get().download_count == 0
    assert _rate_limited_events().count() == 1


@pytest.mark.django_db
@override_settings(PORTAL_LINK_RATE_LIMIT=1)
def test_it_counts_the_forwarded_ip_only_behind_a_trusted_proxy(counter, link, settings):
    path, _ = link
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    with time_machine.travel(LAST_SECOND - timedelta(seconds=30), tick=False):
        settings.TRUST_X_FORWARDED_FOR = False
        untrusted = [Client(**proxy, HTTP_X_FORWARDED_FOR=ip).get(path).status_code for ip in ("1.1.1.1", "2.2.2.2")]
        assert untrusted == [302, 429]  # the header is ignored: both are the proxy's address
        settings.TRUST_X_FORWARDED_FOR = True
        trusted = [Client(**proxy, HTTP_X_FORWARDED_FOR=f"6.6.6.6, {ip}").get(path).status_code
                   for ip in ("3.3.3.3", "4.4.4.4", "4.4.4.4")]
        assert trusted == [302, 302, 429]  # the last hop, as the proxy appended it
    assert sorted(_rate_limited_events().values_list("ip", flat=True)) == ["10.0.0.1", "4.4.4.4"]


@pytest.mark.django_db
@pytest.mark.parametrize("forwarded, recorded", [
    ("203.0.113.7:51234", "203.0.113.7"),  # some proxies append the client's port
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("2001:DB8::0:1", "2001:db8::1"),
    ("unknown", None),  # nginx's $proxy_add_x_forwarded_for can say so
    ("not an address", None),
])
def test_a_forwarded_client_is_recorded_as_an_address_or_not_at_all(link, settings, forwarded, recorded):
    # The audit log's ip column is inet on PostgreSQL: junk there was a 500.
    path, _ = link
    settings.TRUST_X_FORWARDED_FOR = True
    response = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"6.6.6.6, {forwarded}").get(path)
    assert response.status_code == 302
    visit = AuditEvent.objects.get(action=audit.LINK_VISITED)
    assert visit.ip == recorded and visit.details == {"outcome": "redirected"}


@pytest.mark.django_db
def test_an_over_long_forwarded_value_gets_a_counter_of_its_own(counter):
    """Only a misbehaving trusted proxy sends one; it must count, not break the visit."""
    garbage = "x" * 500
    with time_machine.travel(LAST_SECOND, tick=False):
        assert [ratelimit.hit(garbage) for _ in range(2)] == [1, 2]
        assert ratelimit.hit("x" * 499) == 1
    if counter == "database":
        assert sorted(LinkRateCounter.objects.values_list("visits", flat=True)) == [1, 2]
        assert {len(client) for client in LinkRateCounter.objects.values_list("client", flat=True)} == {64}


@pytest.mark.django_db
def test_redis_keys_are_namespaced_like_the_caches_own_and_expire(link, client):
    url = _redis_url()
    _need_redis(url)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                          "KEY_PREFIX": prefix}}
    with override_settings(CACHES=caches), time_machine.travel(LAST_SECOND, tick=False):
        path, _ = link
        for _ in range(3):
            assert client.get(path).status_code == 302
        import redis
        from django.core.cache import cache

        key = f"s-link-rate:127.0.0.1:{int(LAST_SECOND.timestamp()) // 60}"
        assert cache.get(key) == 3  # the cache reads the same key: same namespace, same format
        assert cache.make_key(key) == f"{prefix}:1:{key}"
        with redis.Redis.from_url(url) as raw:
            assert 0 < raw.ttl(cache.make_key(key)) <= ratelimit.REDIS_KEY_TTL
        cache.delete(key)
    assert not LinkRateCounter.objects.exists()  # nothing written to the database table


@pytest.mark.django_db
def test_a_visit_counts_in_one_statement_without_touching_the_cache_table(link, client):
    path, _ = link
    with override_settings(CACHES={"default": DATABASE_CACHE}), CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 302
    statements = [q["sql"] for q in queries]
    counter = [sql for sql in statements if "shares_linkratecounter" in sql]
    assert len(counter) == 1 and "ON CONFLICT" in counter[0] and "RETURNING" in counter[0]
    assert not [sql for sql in statements if "portal_cache" in sql]
    assert LinkRateCounter.objects.get().visits == 1


# --- fail open ------------------------------------------------------------------------------------

@pytest.mark.django_db
@override_settings(PORTAL_LINK_RATE_LIMIT=1)
def test_links_still_work_when_redis_is_down_and_the_log_says_so(link, client, caplog):
    caplog.set_level(logging.INFO)
    path, body = link
    token = path.rsplit("/", 1)[-1]
    # Port 1: nothing listens there, the connection is refused at once.
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://:cache-password@127.0.0.1:1/0"}}
    with override_settings(CACHES=caches):
        responses = [client.get(path) for _ in range(3)]
    assert [r.status_code for r in responses] == [302, 302, 302]  # not limited, not a 500
    from tests.sharecore_fixtures import fetch

    assert fetch(responses[0]["Location"])[:2] == (200, body)
    assert Share.objects.get().download_count == 3
    failures = [r for r in caplog.records if "rate-limit counter (Redis) unavailable" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)  # one line, with its cause, per failure
    assert token not in caplog.text and "cache-password" not in caplog.text


# --- cleanup --------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_tidy_shares_deletes_counters_of_finished_windows(counter, link, client, settings):
    path, _ = link
    now = LAST_SECOND
    for minutes_ago in (60 * 24, 10, 2, 1, 0):
        with time_machine.travel(now - timedelta(minutes=minutes_ago), tick=False):
            for ip in ("10.0.0.1", "10.0.0.2"):
                assert Client(REMOTE_ADDR=ip).get(path).status_code == 302
    database_rows = 10 if counter == "database" else 0
    assert LinkRateCounter.objects.count() == database_rows

    with time_machine.travel(now, tick=False):
        out = StringIO()
        call_command("tidy_shares", "--dry-run", stdout=out)
        assert LinkRateCounter.objects.count() == database_rows
        assert housekeeping.tidy_shares(dry_run=True).rate_counters == (6 if counter == "database" else 0)
        assert tasks.tidy_shares.run()["rate_counters"] == (6 if counter == "database" else 0)
        assert tasks.tidy_shares.run()["rate_counters"] == 0  # idempotent
    # This minute and the one before stay (servers' clocks differ a little).
    minute = int(now.timestamp()) // 60
    expected = {(minute, "10.0.0.1"), (minute, "10.0.0.2"), (minute - 1, "10.0.0.1"), (minute - 1, "10.0.0.2")}
    assert set(LinkRateCounter.objects.values_list("minute", "client")) == (expected if database_rows else set())
    with time_machine.travel(now, tick=False):
        assert [client.get(path).status_code for _ in range(2)] == [302, 302]  # counting goes on


@pytest.mark.django_db
def test_a_backlog_of_counters_is_deleted_in_batches(settings):
    now = LAST_SECOND.timestamp()
    minute = int(now) // 60
    LinkRateCounter.objects.bulk_create(
        [LinkRateCounter(minute=minute - back, client=f"10.0.{back // 250}.{back % 250}", visits=1)
         for back in range(1000)])
    assert ratelimit.prune_counters(now=now, batch_minutes=7) == 998
    assert sorted(LinkRateCounter.objects.values_list("minute", flat=True)) == [minute - 1, minute]


# --- races: one connection per thread, in a database of the test's own ----------------------------

RACE = """
import json, sys, threading, time
import time_machine
from django.contrib.auth.models import User
from django.db import connection, connections
from django.test import Client
from shares import audit, services
from shares.models import AuditEvent, Bucket, Grant, LinkRateCounter, Share

threads, ip = {threads}, {ip!r}
bucket = Bucket.objects.create(name={bucket!r}, region={region!r}, endpoint_url={endpoint!r})
user, _ = User.objects.get_or_create(username="racer")
Grant.objects.get_or_create(bucket=bucket, user=user)
link = services.share_create(user=user, bucket_name=bucket.name, key="race.txt", expires_in=3600)
path = "/s/" + link.url.rsplit("/s/", 1)[1]
connections.close_all()
barrier = threading.Barrier(threads)
codes, errors = [], []

def visit():
    try:
        barrier.wait(60)
        codes.append(Client(REMOTE_ADDR=ip, HTTP_HOST="127.0.0.1").get(path).status_code)
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

# Frozen clock: every visit lands in the same one-minute window, however slow the machine.
with time_machine.travel(time.time(), tick=False):
    workers = [threading.Thread(target=visit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
share = Share.objects.get(pk=link.share.pk)
visits = AuditEvent.objects.filter(action=audit.LINK_VISITED, share_id=share.pk)
print(json.dumps({{
    "errors": errors, "redirects": codes.count(302), "refused": codes.count(429), "codes": len(codes),
    "downloads": share.download_count,
    "redirected_events": visits.filter(details__outcome="redirected").count(),
    "rate_limited_events": visits.filter(details__outcome="rate_limited").count(),
    "counter_rows": list(LinkRateCounter.objects.filter(client=ip).values_list("visits", flat=True)),
}}))
"""


@pytest.fixture(scope="module")
def race_database(tmp_path_factory, local_s3):
    database = SeparateDatabase(tmp_path_factory.mktemp("ratelimit-race"), "ratelimit_race")
    # nanio's credentials and endpoint: the visits sign real redirects.
    env = dict(os.environ, **local_s3.aws_env(), DATABASE_URL=database.url)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.pop("CACHE_URL", None)
    try:
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=600)
        assert migrate.returncode == 0, migrate.stderr
        yield database, env
    finally:
        database.drop()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["database", "redis"])
def test_twenty_racing_visits_with_a_limit_of_ten_let_exactly_ten_through(race_database, local_s3, backend):
    database, env = race_database
    env = dict(env, PORTAL_LINK_RATE_LIMIT="10")
    if backend == "redis":
        url = _redis_url()
        _need_redis(url)
        env["CACHE_URL"] = url
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    script = RACE.format(threads=20, ip=ip, bucket=f"race-{uuid.uuid4().hex[:12]}", region=local_s3.region,
                         endpoint=local_s3.endpoint_url)
    race = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert race.returncode == 0, race.stderr
    outcome = json.loads(race.stdout.strip().splitlines()[-1])
    assert outcome["errors"] == [] and outcome["codes"] == 20
    assert (outcome["redirects"], outcome["refused"]) == (10, 10)
    assert (outcome["downloads"], outcome["redirected_events"], outcome["rate_limited_events"]) == (10, 10, 1)
    assert outcome["counter_rows"] == ([20] if backend == "database" else [])
