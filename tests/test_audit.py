"""The audit log itself: fields, append-only at the database, seals and audit_verify."""
from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from shares import audit, housekeeping, services
from shares.audit_db import purge_window
from shares.models import AuditEvent, AuditSeal, Bucket, Grant
from tests.conftest import PASSWORD
from tests.sharecore_fixtures import fetch

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=dt_timezone.utc)


def _event(at: datetime, **fields) -> AuditEvent:
    with time_machine.travel(at, tick=False):
        return audit.record(fields.pop("action", audit.SHARE_CREATED), actor_name=fields.pop("actor_name", "alice"),
                           **fields)


def _drop_triggers() -> None:
    """What an attacker with the database owner's rights could do."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE shares_auditevent DISABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER shares_auditevent_no_update")
            cursor.execute("DROP TRIGGER shares_auditevent_no_delete")


# --- fields -------------------------------------------------------------------------------------

def test_it_records_the_fields_and_drops_secrets(rf, alice):
    request = rf.get("/", HTTP_USER_AGENT="x" * 600, REMOTE_ADDR="192.0.2.7")
    event = audit.record(audit.SHARE_CREATED, actor=alice, request=request, bucket="b", key="k",
                         details={"kind": "portal", "url": "https://s3/?X-Amz-Signature=abc",
                                  "note": "see https://h/k?X-Amz-Signature=1", "token": "t0k3n"})
    event.refresh_from_db()
    assert (event.actor_id, event.actor_name, event.ip) == (alice.id, "alice", "192.0.2.7")
    assert len(event.user_agent) == 256
    assert event.details == {"kind": "portal", "note": "[redacted]"}


def test_a_share_writes_one_creation_event_and_a_visit_one_visit_event(alice, grants, s3_bucket, put_object, client):
    put_object("team-a/report.pdf", b"%PDF")
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="team-a/report.pdf",
                                   expires_in=3600, kind="portal")
    created = AuditEvent.objects.get(action=audit.SHARE_CREATED)
    assert (created.actor_id, created.bucket, created.key, created.share_id) == (
        alice.id, s3_bucket.name, "team-a/report.pdf", result.share.id)
    assert created.details["kind"] == "portal" and created.details["expires_in"] == 3600
    assert "expires_at" in created.details and "requested_expires_at" in created.details
    token = result.url.rsplit("/", 1)[-1]
    response = client.get(f"/s/{token}", REMOTE_ADDR="198.51.100.9")
    assert response.status_code == 302
    assert fetch(response["Location"])[1] == b"%PDF"
    visit = AuditEvent.objects.get(action=audit.LINK_VISITED)
    assert (visit.share_id, visit.ip, visit.details["outcome"]) == (result.share.id, "198.51.100.9", "redirected")
    assert token not in str(visit.details) and token not in str(created.details)


def test_it_records_a_sign_in(client, alice):
    response = client.post("/accounts/login/", {"login": "alice", "password": PASSWORD}, REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 302
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_id, event.actor_name, event.ip) == (audit.LOGIN, alice.id, "alice", "203.0.113.5")


def test_it_records_a_failed_sign_in_without_the_password(client, alice):
    response = client.post("/accounts/login/", {"login": "alice", "password": "wrong-password-1"})
    assert response.status_code == 200
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_id, event.actor_name) == (audit.LOGIN_FAILED, None, "alice")
    assert "wrong-password-1" not in str(event.details)


def test_it_records_admin_changes_to_buckets_and_grants(admin_client, admin_user, alice):
    response = admin_client.post("/admin/shares/bucket/add/", {
        "name": "audit-demo", "label": "", "region": "us-east-1", "endpoint_url": "", "public_endpoint_url": "",
        "addressing_style": "auto", "aws_profile": "", "enabled": "on", "default_expiry": "3600",
        "max_expiry": "604800"})
    assert response.status_code == 302, response.content[:2000]
    bucket = Bucket.objects.get(name="audit-demo")
    grant_events_before = AuditEvent.objects.count()
    grant = Grant.objects.create(bucket=bucket, user=alice)  # outside the admin: not an admin change
    assert AuditEvent.objects.count() == grant_events_before
    response = admin_client.post(f"/admin/shares/grant/{grant.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    events = list(AuditEvent.objects.filter(action=audit.ADMIN_CHANGE).order_by("id"))
    assert [(e.details["model"], e.details["change"]) for e in events] == [("bucket", "created"), ("grant", "deleted")]
    assert all(e.actor_id == admin_user.id and e.bucket == "audit-demo" for e in events)


def test_a_failed_admin_change_writes_no_event(admin_client):
    response = admin_client.post("/admin/shares/bucket/add/", {"name": "NOT VALID", "default_expiry": "1"})
    assert response.status_code == 200
    assert not AuditEvent.objects.exists()


# --- append-only ------------------------------------------------------------------------------------

def test_the_database_refuses_update(db):
    event = _event(T0)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(key="rewritten")
    assert AuditEvent.objects.get().key == ""


def test_the_database_refuses_delete(db):
    event = _event(T0)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM shares_auditevent")
    assert AuditEvent.objects.count() == 1


def test_the_purge_window_allows_delete_but_never_update_and_closes(db):
    first, second = _event(T0), _event(T0)
    with transaction.atomic(), purge_window():
        AuditEvent.objects.filter(pk=first.pk)._raw_delete(connection.alias)
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(pk=second.pk).update(key="x")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=second.pk).delete()
    assert list(AuditEvent.objects.values_list("id", flat=True)) == [second.id]


@pytest.mark.django_db(transaction=True)
def test_the_purge_window_needs_a_transaction():
    with pytest.raises(RuntimeError):
        with purge_window():
            pass


def test_deleting_a_share_or_user_leaves_its_events(alice, grants, s3_bucket):
    result = services.share_create(user=alice, bucket_name=s3_bucket.name, key="a.txt", expires_in=60,
                                   kind="direct")
    share_id, alice_id = result.share.id, alice.id
    result.share.delete()
    alice.delete()
    event = AuditEvent.objects.get(action=audit.SHARE_CREATED)
    assert (event.share_id, event.actor_id, event.actor_name) == (share_id, alice_id, "alice")


# --- seals and audit_verify --------------------------------------------------------------------

def _seal_everything(now: datetime) -> list:
    return housekeeping.seal_audit(now=now)


def test_it_seals_only_closed_periods(settings, db):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    _event(T0 + timedelta(minutes=10))
    _event(T0 + timedelta(minutes=61))
    # 10:03: the 09:00-10:00 hour ended, but not a margin ago.
    assert housekeeping.seal_audit(now=T0 + timedelta(minutes=63)) == []
    plans = housekeeping.seal_audit(now=T0 + timedelta(minutes=70))
    assert [(p.period_start, p.period_end, p.event_count) for p in plans] == [(T0, T0 + timedelta(hours=1), 1)]
    assert housekeeping.seal_audit(now=T0 + timedelta(minutes=70)) == []  # idempotent


def test_it_chains_seals_and_verifies(settings, db):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    for minutes in (5, 30, 65, 400):
        _event(T0 + timedelta(minutes=minutes), key=f"k{minutes}", details={"n": minutes})
    _seal_everything(T0 + timedelta(days=1))
    seals = list(AuditSeal.objects.order_by("period_end"))
    # Idle hours are sealed as one period each stretch; the day's quiet end too.
    assert [s.event_count for s in seals] == [2, 1, 0, 1, 0]
    assert seals[1].previous_digest == seals[0].digest
    report = housekeeping.verify_audit(now=T0 + timedelta(days=1))
    assert report.ok and report.events == 4 and report.unsealed == 0


def test_audit_verify_names_a_changed_and_a_removed_row(settings, db):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    events = [_event(T0 + timedelta(minutes=m), key=f"k{m}") for m in (1, 2, 3, 70)]
    _seal_everything(T0 + timedelta(days=1))
    call_command("audit_verify")  # clean: no error
    _drop_triggers()
    AuditEvent.objects.filter(pk=events[1].pk).update(key="innocent.txt")
    AuditEvent.objects.filter(pk=events[2].pk).delete()
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify")
    assert failure.value.returncode == 1
    report = housekeeping.verify_audit()
    assert (report.changed, report.removed, report.inserted) == ([events[1].id], [events[2].id], [])


def test_audit_verify_names_a_row_inserted_into_a_sealed_period(settings, db):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    _event(T0 + timedelta(minutes=1))
    _seal_everything(T0 + timedelta(days=1))
    forged = _event(T0 + timedelta(minutes=2), actor_name="nobody")
    report = housekeeping.verify_audit()
    assert report.inserted == [forged.id] and not report.ok


def test_audit_verify_catches_a_forged_or_removed_seal(settings, db):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    _event(T0 + timedelta(minutes=1))
    _event(T0 + timedelta(minutes=61))
    _event(T0 + timedelta(minutes=121))
    _seal_everything(T0 + timedelta(days=1))
    middle = AuditSeal.objects.order_by("period_end")[1]
    AuditSeal.objects.filter(pk=middle.pk).update(event_count=5)
    assert any("does not verify" in e for e in housekeeping.verify_audit().chain_errors)
    AuditSeal.objects.filter(pk=middle.pk).delete()
    assert any("chain broken" in e for e in housekeeping.verify_audit().chain_errors)


def test_audit_verify_does_not_flag_purged_events(settings, db):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    settings.AUDIT_RETENTION_DAYS = 30
    old = _event(T0)
    kept = _event(T0 + timedelta(days=40))
    _seal_everything(T0 + timedelta(days=41))
    result = housekeeping.purge_audit(now=T0 + timedelta(days=35))
    assert result.count == 1
    report = housekeeping.verify_audit(now=T0 + timedelta(days=41))
    assert report.ok, report
    assert report.purged == 1 and not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(pk=kept.pk).exists()


def test_an_admin_token_deletion_writes_exactly_one_event(admin_client, alice):
    from shares.models import ApiToken

    token = ApiToken.objects.create(user=alice, name="backup", digest="d" * 64, prefix="s3p_abcdef")
    response = admin_client.post(f"/admin/shares/apitoken/{token.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [audit.TOKEN_DELETED]


def test_audit_verify_names_an_event_moved_to_another_time(settings, db):
    settings.AUDIT_SEAL_PERIOD_MINUTES = 60
    moved = _event(T0 + timedelta(minutes=1))
    _event(T0 + timedelta(minutes=100))
    _seal_everything(T0 + timedelta(days=1))
    _drop_triggers()
    AuditEvent.objects.filter(pk=moved.pk).update(created_at=T0 + timedelta(minutes=90))
    report = housekeeping.verify_audit()
    assert (report.changed, report.removed, report.inserted) == ([moved.id], [], [])


def test_a_table_rebuild_on_sqlite_gets_its_triggers_back(db):
    from shares.audit_db import ensure_append_only_sqlite

    if connection.vendor != "sqlite":
        pytest.skip("SQLite rebuilds tables to alter them; PostgreSQL keeps triggers")
    _drop_triggers()  # what a table rebuild by a later migration does
    ensure_append_only_sqlite(using=connection.alias)  # run by post_migrate
    event = _event(T0)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
