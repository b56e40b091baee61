"""shares/fastsql.py: the precompiled statements of share creation and link
visits read and write exactly what the ORM would, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import functools
import os

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from shares import audit, fastsql, services, tokens
from shares.models import ApiToken, AuditEvent, Bucket, Grant, Share

pytestmark = pytest.mark.django_db


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_the_grant_query_returns_the_orm_bucket_and_every_grant_direct_or_through_a_group(alice, bob, charlie, grants,
                                                                                         s3_bucket):
    Grant.objects.create(bucket=s3_bucket, user=alice, prefix="mine/", can_share=False, max_expiry=60)
    rows = fastsql.bucket_grants(alice.pk, s3_bucket.name)
    assert sorted((can, exp, prefix) for _, can, exp, prefix in rows) == [(False, 60, "mine/"), (True, 604800, "")]
    bucket = rows[0][0]
    assert _fields(bucket) == _fields(Bucket.objects.get(pk=s3_bucket.pk))
    assert isinstance(bucket.enabled, bool) and timezone.is_aware(bucket.created_at)
    assert [(can, exp, prefix) for _, can, exp, prefix in fastsql.bucket_grants(bob.pk, s3_bucket.name)] == [
        (True, 86400, "team-a/")]
    assert fastsql.bucket_grants(charlie.pk, s3_bucket.name) == []
    assert fastsql.bucket_grants(alice.pk, "no-such-bucket") == []


def test_a_disabled_bucket_or_a_left_group_gives_no_grant(alice, grants, s3_bucket):
    alice.groups.remove(Group.objects.get(name="Team"))
    assert fastsql.bucket_grants(alice.pk, s3_bucket.name) == []
    alice.groups.add(Group.objects.get(name="Team"))
    Bucket.objects.filter(pk=s3_bucket.pk).update(enabled=False)
    assert fastsql.bucket_grants(alice.pk, s3_bucket.name) == []


def test_the_link_lookup_returns_the_orm_share_and_bucket_in_one_query(alice, grants, s3_bucket,
                                                                       django_assert_num_queries):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="a b.txt", expires_in=3600,
                                   max_downloads=3, note="for Bob")
    digest = services.token_digest(services.token_for(result.share))
    with django_assert_num_queries(1):
        share = fastsql.portal_share(digest)
        assert share.bucket.name == s3_bucket.name
    expected = Share.objects.get(pk=result.share.pk)
    assert _fields(share) == _fields(expected)
    assert _fields(share.bucket) == _fields(Bucket.objects.get(pk=s3_bucket.pk))
    assert fastsql.portal_share("0" * 64) is None


def test_the_link_lookup_finds_a_share_whose_bucket_was_deleted_but_never_a_direct_link(alice, grants, s3_bucket):
    portal = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60).share
    direct = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60, kind="direct").share
    Share.objects.filter(pk=direct.pk).update(token_digest="d" * 64)
    assert fastsql.portal_share("d" * 64) is None
    Bucket.objects.filter(pk=s3_bucket.pk).delete()
    share = fastsql.portal_share(services.token_digest(services.token_for(portal)))
    assert share.pk == portal.pk and share.bucket_id is None and share.bucket is None


def test_a_download_counts_only_while_the_share_is_live_and_under_its_limit(alice, grants, s3_bucket):
    share = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60,
                                  max_downloads=2).share
    now = timezone.now()
    assert fastsql.count_download(share.pk, now) and fastsql.count_download(share.pk, now)
    assert not fastsql.count_download(share.pk, now)
    counted = Share.objects.get(pk=share.pk)
    assert counted.download_count == 2 and counted.status == Share.Status.USED_UP  # the limit's visit marks it
    unlimited = services.share_create(user=alice, bucket_name=s3_bucket.name, key="y", expires_in=60).share
    assert not fastsql.count_download(unlimited.pk, now + dt.timedelta(seconds=61))  # expired
    Share.objects.filter(pk=unlimited.pk).update(revoked_at=now)
    assert not fastsql.count_download(unlimited.pk, now)
    assert Share.objects.get(pk=unlimited.pk).download_count == 0


def test_an_inserted_audit_event_reads_back_as_written(alice, rf):
    request = rf.get("/", HTTP_USER_AGENT="Agent/1", REMOTE_ADDR="2001:db8::1")
    event = audit.record(audit.SHARE_CREATED, actor=alice, request=request, bucket="b", key="k ü",
                         details={"n": 1, "nested": {"ok": True}, "when": "2026-01-01T00:00:00+00:00"})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert event.pk is not None and not event._state.adding
    assert _fields(stored) == _fields(event)
    assert stored.details == {"n": 1, "nested": {"ok": True}, "when": "2026-01-01T00:00:00+00:00"}
    assert stored.ip == "2001:db8::1" and stored.actor_id == alice.pk


def test_a_share_and_its_event_are_written_together_with_the_share_id_in_the_details(alice, grants, s3_bucket):
    # PostgreSQL: one statement (a data-modifying CTE); SQLite: two INSERTs in a transaction.
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60, max_downloads=3)
    event = AuditEvent.objects.get(action=audit.SHARE_CREATED)
    assert event.share_id == result.share.pk and event.actor == alice and event.bucket == s3_bucket.name
    assert event.details == {"share_id": result.share.pk, "kind": "portal", "expires_in": 60, "max_downloads": 3,
                             "requested_expires_at": result.share.requested_expires_at.isoformat(),
                             "expires_at": result.share.expires_at.isoformat()}


def test_a_counted_visit_and_its_event_are_written_only_together(alice, grants, s3_bucket, rf):
    share = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60,
                                  max_downloads=1).share
    now = timezone.now()
    if not fastsql.one_statement():
        pytest.skip("SQLite counts and records in a transaction (links.share_link)")
    request = rf.get("/s/x", HTTP_USER_AGENT="Curl/8", REMOTE_ADDR="192.0.2.7")

    def visit_event():
        return audit.event(audit.LINK_VISITED, request=request, actor_name="anonymous", bucket=share.bucket_name,
                           key=share.key, share=share, details={"outcome": "redirected"})

    event = visit_event()
    assert fastsql.count_download_with_event(share.pk, now, event)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.share_id, stored.ip, stored.user_agent, stored.details) == (
        share.pk, "192.0.2.7", "Curl/8", {"outcome": "redirected"})
    assert not fastsql.count_download_with_event(share.pk, now, visit_event())  # used up: nothing written
    assert AuditEvent.objects.filter(action=audit.LINK_VISITED).count() == 1
    assert Share.objects.get(pk=share.pk).status == Share.Status.USED_UP


# --- share creation's one-statement path: the grant check inside the INSERT -------------

def _attempt(user, bucket_name: str, key: str, expires_in: int, *, config_values=None, by_token=False) -> bool:
    """fastsql.insert_share_if_granted for a portal link, as share_create builds it;
    by_token: fastsql.insert_share_by_token for a token of the user's, as
    share_create_with_token builds it."""
    now = timezone.now()
    share = Share(bucket_name=bucket_name, key=key, kind=Share.Kind.PORTAL, created_by=None if by_token else user,
                  created_by_name="" if by_token else user.username, created_at=now, expires_in=expires_in,
                  requested_expires_at=now + dt.timedelta(seconds=expires_in),
                  expires_at=now + dt.timedelta(seconds=expires_in), token_nonce="n" * 43,
                  token_digest=f"{Share.objects.count():064d}")
    event = audit.event(audit.SHARE_CREATED, actor=None if by_token else user,
                        actor_name="" if by_token else user.username, bucket=bucket_name, key=key,
                        details={"kind": "portal"})
    if not by_token:
        return fastsql.insert_share_if_granted(share, event, user_id=user.pk, cap=30 * 86400,
                                               config_values=config_values)
    token = tokens.create_api_token(user, f"t{ApiToken.objects.count()}")[1]
    found = fastsql.insert_share_by_token(share, event, token_digest=tokens.bearer_digest(f"Bearer {token}"),
                                          stale_before=now, cap=30 * 86400, config_values=config_values)
    if found is not None:
        assert (found.user_id, found.username) == (user.pk, user.username)
        stored = Share.objects.get(pk=share.pk)
        assert (stored.created_by_id, stored.created_by_name) == (user.pk, user.username)
        assert AuditEvent.objects.get(share_id=share.pk).actor_id == user.pk
    return found is not None


def _statements(captured) -> list[str]:
    """The SQL statements run, without the savepoints of the test's own transaction."""
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def test_the_one_statement_share_writes_the_same_rows_as_the_full_path(alice, grants, s3_bucket):
    # The first direct link of a bucket takes the full path (and remembers its
    # signing configuration); from then on a share is the grant check and the
    # writes in one statement on PostgreSQL (a transaction of two on SQLite).
    services._signing_configs.clear()
    full = services.share_create(user=alice, bucket_name=s3_bucket.name, key="d/ü x.txt", expires_in=600,
                                 kind="direct", note="first")
    with CaptureQueriesContext(connection) as direct_sql:
        fast = services.share_create(user=alice, bucket_name=s3_bucket.name, key="d/ü x.txt", expires_in=600,
                                     kind="direct", note="first")
    with CaptureQueriesContext(connection) as portal_sql:
        portal = services.share_create(user=alice, bucket_name=s3_bucket.name, key="d/ü x.txt", expires_in=600,
                                       max_downloads=4, note="p")
    for captured in (direct_sql, portal_sql):
        # No read before the write: INSERT … SELECT … WHERE EXISTS (<grant>).
        assert [sql.split(" ", 1)[0] for sql in _statements(captured)] == (
            ["WITH"] if fastsql.one_statement() else ["INSERT", "INSERT"])
    ignore = {"id", "created_at", "requested_expires_at", "expires_at"}
    stored = {s.pk: s for s in Share.objects.all()}

    def row(share):
        return {k: v for k, v in _fields(stored[share.pk]).items() if k not in ignore}

    assert row(fast.share) == row(full.share)
    assert row(portal.share)["bucket_id"] == s3_bucket.pk and row(portal.share)["max_downloads"] == 4
    assert fast.share.bucket_id == s3_bucket.pk and fast.share.bucket == s3_bucket
    for result in (full, fast, portal):
        event = AuditEvent.objects.get(share_id=result.share.pk)
        assert event.details["share_id"] == result.share.pk and event.actor_id == alice.pk
        assert event.bucket == s3_bucket.name and event.key == "d/ü x.txt"
        assert _fields(result.share) == _fields(stored[result.share.pk])
    assert fast.url.split("?")[0] == full.url.split("?")[0]


@pytest.mark.parametrize("prefix, key, allowed", [
    ("", "anything/at/all", True),
    ("team-a/", "team-a/x", True),
    ("team-a/", "team-a-secret/x", False),  # a prefix names a folder
    ("team-a", "team-a/x", True),  # "team-a" means "team-a/"
    ("team-a", "team-ab/x", False),
    ("team-a", "team-a", False),  # the folder's name is not inside the folder
    ("ü/", "ü/ä b+%.txt", True),
    ("ü/", "u/x", False),
    ("a%/", "ab/x", False),  # no LIKE wildcards
    ("a_/", "ab/x", False),
    ("Team/", "team/x", False),  # case matters, as in S3
])
@pytest.mark.parametrize("by_token", [False, True], ids=["user", "token"])
def test_the_statement_applies_the_grant_prefix_exactly_as_grants_best_access(bob, s3_bucket, prefix, key,
                                                                             allowed, by_token):
    Grant.objects.create(bucket=s3_bucket, user=bob, prefix=prefix, can_share=True)
    from shares import grants as grant_rules

    accesses = grant_rules.bucket_accesses(bob, s3_bucket)
    assert (grant_rules.best_access(accesses, key) is not None) is allowed
    assert _attempt(bob, s3_bucket.name, key, 60, by_token=by_token) is allowed
    assert Share.objects.count() == AuditEvent.objects.filter(action=audit.SHARE_CREATED).count() == int(allowed)


@pytest.mark.parametrize("by_token", [False, True], ids=["user", "token"])
def test_the_statement_writes_nothing_unless_a_grant_allows_sharing_for_that_long(alice, bob, charlie, grants,
                                                                                 s3_bucket, by_token):
    attempt = functools.partial(_attempt, by_token=by_token)
    assert not attempt(charlie, s3_bucket.name, "x", 60)  # no grant
    assert not attempt(alice, "no-such-bucket", "x", 60)
    assert not attempt(bob, s3_bucket.name, "team-a/x", 86401)  # the grant's maximum is a day
    assert attempt(bob, s3_bucket.name, "team-a/x", 86400)
    Grant.objects.create(bucket=s3_bucket, user=charlie, prefix="", can_share=False)
    assert not attempt(charlie, s3_bucket.name, "x", 60)  # may browse, not share
    Bucket.objects.filter(pk=s3_bucket.pk).update(max_expiry=3600)
    assert not attempt(alice, s3_bucket.name, "x", 3601)  # the bucket's maximum
    assert attempt(alice, s3_bucket.name, "x", 3600)
    Bucket.objects.filter(pk=s3_bucket.pk).update(max_expiry=10**9)
    assert not attempt(alice, s3_bucket.name, "x", 30 * 86400 + 1)  # the portal cap
    Bucket.objects.filter(pk=s3_bucket.pk).update(enabled=False)
    assert not attempt(alice, s3_bucket.name, "x", 60)
    assert Share.objects.count() == AuditEvent.objects.filter(action=audit.SHARE_CREATED).count() == 2


def test_the_token_statement_names_only_an_active_non_superuser_and_whether_last_used_is_due(alice, grants,
                                                                                            s3_bucket):
    def attempt(digest: str, stale_before: dt.datetime):
        now = timezone.now()
        share = Share(bucket_name=s3_bucket.name, key="x", kind=Share.Kind.PORTAL, created_at=now, expires_in=60,
                      requested_expires_at=now, expires_at=now, token_nonce="n" * 43,
                      token_digest=f"{Share.objects.count():064d}")
        event = audit.event(audit.SHARE_CREATED, bucket=s3_bucket.name, key="x", details={})
        return fastsql.insert_share_by_token(share, event, token_digest=digest, stale_before=stale_before,
                                             cap=86400)

    token = tokens.create_api_token(alice, "t")[1]
    digest = tokens.bearer_digest(f"Bearer {token}")
    used = timezone.now() - dt.timedelta(minutes=5)
    ApiToken.objects.update(last_used_at=used)
    assert attempt(digest, used - dt.timedelta(seconds=1)).stale is False
    assert attempt(digest, used).stale is True
    assert attempt(tokens.digest_of("s3p_unknown"), used) is None
    alice.is_superuser = True  # superusers take the full path: they may share without a grant
    alice.save()
    assert attempt(digest, used) is None
    alice.is_superuser, alice.is_active = False, False
    alice.save()
    assert attempt(digest, used) is None
    assert Share.objects.count() == AuditEvent.objects.filter(action=audit.SHARE_CREATED).count() == 2


@pytest.mark.parametrize("by_token", [False, True], ids=["user", "token"])
def test_a_direct_link_is_signed_afresh_when_the_registry_changed_since_the_last_one(alice, grants, s3_bucket,
                                                                                     by_token):
    attempt = functools.partial(_attempt, by_token=by_token)
    services._signing_configs.clear()
    first = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60, kind="direct")
    assert first.url.startswith(s3_bucket.endpoint_url)
    values = services._signing_configs[s3_bucket.name][1]
    assert attempt(alice, s3_bucket.name, "x", 60, config_values=values)
    Bucket.objects.filter(pk=s3_bucket.pk).update(public_endpoint_url="https://files.example.com")
    assert not attempt(alice, s3_bucket.name, "x", 60, config_values=values)  # stale: nothing written
    second = services.share_create(user=alice, bucket_name=s3_bucket.name, key="x", expires_in=60, kind="direct")
    assert second.url.startswith("https://files.example.com/")
    assert Share.objects.filter(kind="direct").count() == 2


def test_postgresql_prepares_the_share_statement_once_and_reuses_it(alice, grants, s3_bucket):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no server-side prepared statements (this runs in CI's PostgreSQL pass)")

    def prepared() -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements "
                           "WHERE statement LIKE %s", ["%INSERT INTO \"shares_share\"%EXISTS%"])
            return dict(cursor.fetchall())

    for n in range(3):
        services.share_create(user=alice, bucket_name=s3_bucket.name, key=f"k{n}", expires_in=60)
    assert list(prepared().values()) == [3]  # one statement, run three times
    # DB_PREPARED_STATEMENTS=false (e.g. behind an old PgBouncer) leaves nothing prepared, and shares still work.
    raw = connection.connection
    raw.prepare_threshold = None
    try:
        connection.connection.execute("DEALLOCATE ALL")
        result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="after", expires_in=60)
        assert Share.objects.filter(pk=result.share.pk, key="after").exists()
        assert prepared() == {}
    finally:
        raw.prepare_threshold = 2**31 - 1


def test_sqlite_writers_queue_on_a_lock_file_beside_the_database(tmp_path):
    # gunicorn workers and the Celery worker are separate processes: a hot write
    # holds an flock() on "<database>.writer-lock" so that the next process waits
    # in the kernel (woken at once) instead of sleeping in SQLite's busy handler.
    import fcntl
    import stat
    import subprocess
    import sys

    database = tmp_path / "portal.sqlite3"

    class FileDatabase:
        settings_dict = {"NAME": str(database)}

    fd = fastsql._sqlite_lock_fd(FileDatabase)
    lock_file = tmp_path / "portal.sqlite3.writer-lock"
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    probe = [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(lock_file)]
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert subprocess.run(probe, capture_output=True).returncode != 0  # another process must wait
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    assert subprocess.run(probe, capture_output=True).returncode == 0
    assert fastsql._sqlite_lock_fd(FileDatabase) == fd  # one descriptor per process
    # A forked child (a gunicorn worker of a --preload master) must open its own
    # file: with the parent's, it would share the parent's lock instead of waiting.
    read, write = os.pipe()
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe and exits at once
            try:
                fcntl.flock(fastsql._sqlite_lock_fd(FileDatabase), fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(write, b"got the lock")
            except BlockingIOError:
                os.write(write, b"waits")
            os._exit(0)
        os.waitpid(child, 0)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
    assert os.read(read, 100) == b"waits"
    os.close(read)
    os.close(write)

    class MemoryDatabase:
        settings_dict = {"NAME": "file:memorydb_default?mode=memory&cache=shared"}

    assert fastsql._sqlite_lock_fd(MemoryDatabase) is None  # nothing to share with another process


def test_parameters_are_exactly_what_djangos_field_adapters_give(alice, grants, s3_bucket, rf):
    # fastsql skips get_db_prep_save() for values it would return unchanged;
    # every parameter must still equal the adapter's, type included.
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="ü/a b.txt", expires_in=60,
                                   max_downloads=2, note="n")
    request = rf.get("/", HTTP_USER_AGENT="Agent/1", REMOTE_ADDR="2001:db8::1")
    event = audit.event(audit.SHARE_CREATED, actor=alice, request=request, bucket="b", key="k",
                        share=result.share, details={"n": 1})
    share = Share.objects.get(pk=result.share.pk)
    # A time in another zone, and one without microseconds, take other paths.
    share.revoked_at = timezone.now().astimezone(dt.timezone(dt.timedelta(hours=2)))
    share.requested_expires_at = share.requested_expires_at.replace(microsecond=0)
    share.revoked_by_id = alice.pk

    def comparable(value):
        return type(value).__name__, getattr(value, "obj", value)  # Jsonb wraps its value

    for obj in (share, event):
        fields = [f for f in obj._meta.local_concrete_fields if f is not obj._meta.pk]
        expected = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
        assert [comparable(v) for v in fastsql._prepare(obj, fields, connection)] == [comparable(v) for v in expected]
