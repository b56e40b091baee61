"""Celery housekeeping: retention purge, tidying shares, locks, commands, and a
worker killed in the middle of a purge."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from shares import audit, housekeeping, tasks
from shares.audit_db import Busy, job_lock
from shares.models import AuditEvent, Share
from tests.separate_database import SeparateDatabase

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=dt_timezone.utc)


def _events(at: datetime, count: int = 1, **fields) -> None:
    AuditEvent.objects.bulk_create(
        [AuditEvent(created_at=at, action=audit.LINK_VISITED, actor_name="anonymous", **fields) for _ in range(count)]
    )


def _share(*, expires_at: datetime, revoked_at: datetime | None = None, status: str = "active") -> Share:
    return Share.objects.create(bucket_name="b", key="k", expires_in=60, requested_expires_at=expires_at,
                                expires_at=expires_at, created_by_name="alice", revoked_at=revoked_at, status=status)


# --- purge -------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_it_purges_at_the_exact_retention_boundary(settings):
    settings.AUDIT_RETENTION_DAYS = 30
    cutoff = NOW - timedelta(days=30)
    _events(cutoff - timedelta(microseconds=1), key="older")
    _events(cutoff, key="exactly at the cutoff")
    _events(cutoff + timedelta(seconds=1), key="newer")
    with time_machine.travel(NOW, tick=False):
        result = housekeeping.purge_audit()
    assert (result.count, result.cutoff) == (1, cutoff)
    assert set(AuditEvent.objects.exclude(action=audit.AUDIT_PURGED).values_list("key", flat=True)) == {
        "exactly at the cutoff", "newer"}
    purged = AuditEvent.objects.get(action=audit.AUDIT_PURGED)
    assert purged.details == {"count": 1, "cutoff": cutoff.isoformat(), "retention_days": 30}


@pytest.mark.django_db
def test_a_second_purge_deletes_nothing_and_records_nothing(settings):
    settings.AUDIT_RETENTION_DAYS = 30
    _events(NOW - timedelta(days=31), count=3)
    with time_machine.travel(NOW, tick=False):
        assert housekeeping.purge_audit().count == 3
        total = AuditEvent.objects.count()
        assert housekeeping.purge_audit().count == 0
    assert AuditEvent.objects.count() == total == 1


@pytest.mark.django_db
def test_it_purges_in_batches_and_records_one_event(settings):
    settings.AUDIT_RETENTION_DAYS = 1
    _events(NOW - timedelta(days=2), count=4500)
    with time_machine.travel(NOW, tick=False):
        result = housekeeping.purge_audit(batch_size=2000)
    assert (result.count, result.batches) == (4500, 3)
    assert list(AuditEvent.objects.values_list("action", "details__count")) == [(audit.AUDIT_PURGED, 4500)]


@pytest.mark.django_db
def test_a_retention_of_zero_keeps_everything(settings):
    settings.AUDIT_RETENTION_DAYS = 0
    _events(NOW - timedelta(days=3000))
    out = StringIO()
    call_command("purge_audit", stdout=out)
    assert "keeping every event" in out.getvalue()
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db
def test_purge_dry_run_prints_and_deletes_nothing(settings):
    settings.AUDIT_RETENTION_DAYS = 30
    _events(NOW - timedelta(days=40), count=2)
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("purge_audit", "--dry-run", stdout=out)
    assert "Would delete 2 events older than 2026-05-02" in out.getvalue()
    assert AuditEvent.objects.count() == 2


# --- tidy shares --------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_tidy_marks_expired_shares_and_deletes_old_ones_keeping_their_events(settings):
    settings.SHARE_RETENTION_DAYS = 90
    live = _share(expires_at=NOW + timedelta(hours=1))
    just_expired = _share(expires_at=NOW - timedelta(minutes=1))
    long_gone = _share(expires_at=NOW - timedelta(days=91), status="expired")
    revoked_long_ago = _share(expires_at=NOW + timedelta(days=400), revoked_at=NOW - timedelta(days=100),
                              status="revoked")
    revoked_lately = _share(expires_at=NOW + timedelta(days=1), revoked_at=NOW - timedelta(days=1), status="revoked")
    audit.record(audit.SHARE_CREATED, actor_name="alice", share=long_gone, key="k")

    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("tidy_shares", "--dry-run", stdout=out)
        assert "Would mark 1 shares expired; would delete 2 old share records." in out.getvalue()
        result = housekeeping.tidy_shares()
        assert (result.expired, result.deleted) == (1, 2)
        assert housekeeping.tidy_shares() == housekeeping.TidyResult(0, 0)  # idempotent
    assert set(Share.objects.values_list("id", "status")) == {
        (live.id, "active"), (just_expired.id, "expired"), (revoked_lately.id, "revoked")}
    assert not Share.objects.filter(id__in=[long_gone.id, revoked_long_ago.id]).exists()
    assert AuditEvent.objects.get().share_id == long_gone.id


# --- sealing command ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_seal_dry_run_writes_no_seal(settings):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    _events(timezone.now() - timedelta(hours=3))
    out = StringIO()
    call_command("seal_audit", "--dry-run", stdout=out)
    assert "would seal" in out.getvalue()
    from shares.models import AuditSeal
    assert not AuditSeal.objects.exists()
    call_command("seal_audit", stdout=StringIO())
    assert AuditSeal.objects.filter(event_count=1).exists()


# --- tasks and locks -----------------------------------------------------------------------------------

def _hold_lock_in_another_connection(name: str, held: threading.Event, release: threading.Event) -> None:
    try:
        with job_lock(name):
            held.set()
            release.wait(30)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_second_concurrent_run_backs_off(settings):
    settings.AUDIT_RETENTION_DAYS = 1
    _events(timezone.now() - timedelta(days=2))
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock_in_another_connection, args=("purge_audit", held, release))
    holder.start()
    try:
        assert held.wait(10)
        assert tasks.purge_audit.run() == {"status": "busy"}
        assert AuditEvent.objects.count() == 1
    finally:
        release.set()
        holder.join()
    assert tasks.purge_audit.run()["deleted"] == 1


@pytest.mark.django_db
def test_the_tasks_are_acked_late_and_limited_below_the_visibility_timeout(settings):
    for task in (tasks.tidy_shares, tasks.seal_audit, tasks.purge_audit):
        assert task.acks_late and task.reject_on_worker_lost
        assert task.soft_time_limit < task.time_limit < 3600
    from portal.celery import app
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"shares.tasks.tidy_shares", "shares.tasks.seal_audit", "shares.tasks.purge_audit"} <= scheduled


@pytest.mark.django_db
def test_the_lock_is_exclusive(db):
    with job_lock("unit-lock"):
        if connection.vendor == "sqlite":  # flock: a second open in the same process conflicts
            with pytest.raises(Busy):
                with job_lock("unit-lock"):
                    pass
    with job_lock("unit-lock"):
        pass  # released


# --- a worker killed mid-purge -------------------------------------------------------------------------

SEED = """
from datetime import timedelta
from django.utils import timezone
from shares.models import AuditEvent
old = timezone.now() - timedelta(days=400)
for _ in range({batches}):
    AuditEvent.objects.bulk_create([AuditEvent(created_at=old, action="link.visited", actor_name="anonymous")
                                    for _ in range(5000)])
AuditEvent.objects.bulk_create([AuditEvent(action="share.created", actor_name="alice", key="recent")
                                for _ in range(7)])
"""


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.django_db
def test_a_worker_killed_mid_purge_leaves_a_state_the_next_run_finishes(tmp_path, celery_worker_process):
    database = SeparateDatabase(tmp_path, "audit_kill")
    try:
        env = dict(os.environ, DATABASE_URL=database.url, AUDIT_RETENTION_DAYS="365")
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        assert _manage(env, "migrate", "-v0").returncode == 0
        seeded = _manage(env, "shell", "-c", SEED.format(batches=12))
        assert seeded.returncode == 0, seeded.stderr
        total_old = 60_000
        assert database.scalar("SELECT COUNT(*) FROM shares_auditevent") == total_old + 7

        queue = f"audit-kill-{uuid.uuid4().hex[:8]}"
        worker = celery_worker_process(env, queues=queue, log_path=tmp_path / "worker.log")
        tasks.purge_audit.apply_async(kwargs={"batch_size": 100}, queue=queue)
        deadline = time.monotonic() + 120
        remaining = total_old
        while time.monotonic() < deadline:
            remaining = database.scalar("SELECT COUNT(*) FROM shares_auditevent WHERE action = 'link.visited'")
            if remaining <= total_old - 3000:  # some batches committed, most still to go
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.02)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)

        remaining = database.scalar("SELECT COUNT(*) FROM shares_auditevent WHERE action = 'link.visited'")
        assert 0 < remaining < total_old, "the kill should land mid-purge"
        assert remaining % 100 == 0, "each batch commits whole or not at all"
        assert database.scalar("SELECT COUNT(*) FROM shares_auditevent WHERE key = 'recent'") == 7

        # The next run (lock released by the dead worker) finishes the job.
        finished = _manage(env, "purge_audit")
        assert finished.returncode == 0, finished.stderr
        assert f"Deleted {remaining} events" in finished.stdout
        assert database.scalar("SELECT COUNT(*) FROM shares_auditevent WHERE action = 'link.visited'") == 0
        assert database.scalar("SELECT COUNT(*) FROM shares_auditevent WHERE key = 'recent'") == 7
        assert database.scalar("SELECT COUNT(*) FROM shares_auditevent WHERE action = 'audit.purged'") >= 1
        again = _manage(env, "purge_audit")
        assert "Deleted 0 events" in again.stdout
    finally:
        connections.close_all()
        database.drop()


@pytest.mark.slow
@pytest.mark.django_db
def test_a_purge_of_another_database_is_not_blocked_by_this_ones(tmp_path):
    """The job lock belongs to one database, as PostgreSQL's advisory locks do:
    two portals (or two test workers) sharing a data folder purge independently."""
    database = SeparateDatabase(tmp_path, "other_purge")
    try:
        env = dict(os.environ, DATABASE_URL=database.url)
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        assert _manage(env, "migrate", "-v0").returncode == 0
        with job_lock("purge_audit"):  # this database's purge is running (test_a_second_concurrent_run_backs_off)
            other = _manage(env, "purge_audit")
        assert other.returncode == 0, other.stderr
        assert "Deleted 0 events" in other.stdout
    finally:
        connections.close_all()
        database.drop()
