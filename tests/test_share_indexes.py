"""The indexes every share and audit event pays for when it is written
(migration 0007), and that each lookup they served still has an index."""
from __future__ import annotations

import pytest
from django.db import connection

from shares import services
from shares.models import AuditEvent, Share

pytestmark = pytest.mark.django_db


def _index_columns(table: str) -> list[tuple[str, ...]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [tuple(info["columns"]) for info in constraints.values() if info["index"]]


def _plan(queryset) -> str:
    """The query plan, with PostgreSQL told to avoid a sequential scan if it
    can: the test tables are tiny, and the question is whether an index fits."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # the test's transaction only
    return queryset.explain()


def test_the_audit_log_has_no_single_column_index_that_a_composite_one_repeats():
    columns = _index_columns(AuditEvent._meta.db_table)
    assert ("actor_id",) not in columns and ("share_id",) not in columns
    assert ("actor_id", "id") in columns and ("share_id", "id") in columns


def test_an_unrevoked_share_adds_no_entry_to_the_revoker_index():
    columns = _index_columns(Share._meta.db_table)
    assert columns.count(("revoked_by_id",)) == 1  # the partial index, not the ForeignKey default
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'shares_share_revoked_by_idx'")
        else:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'shares_share_revoked_by_idx'")
        (definition,) = cursor.fetchone()
    assert "revoked_by_id" in definition and "IS NOT NULL" in definition.upper()


def test_deleting_a_user_who_revoked_shares_finds_them_by_index_and_keeps_them_revoked(alice, bob, grants, s3_bucket):
    share = services.share_create(user=alice, bucket_name=s3_bucket.name, key="a b.txt", expires_in=3600).share
    services.share_revoke(share=share, user=bob)
    assert "shares_share_revoked_by_idx" in _plan(Share.objects.filter(revoked_by__in=[bob.pk]))
    bob.delete()
    share.refresh_from_db()
    assert share.revoked_by_id is None and share.revoked_at is not None
    assert share.current_status() == Share.Status.REVOKED


def test_the_audit_log_by_actor_and_by_share_still_reads_an_index(alice, grants, s3_bucket):
    share = services.share_create(user=alice, bucket_name=s3_bucket.name, key="a b.txt", expires_in=3600).share
    assert "shares_audi_actor_i_2e6f10_idx" in _plan(AuditEvent.objects.filter(actor=alice).order_by("-id")[:50])
    assert "shares_audi_share_i_26cf04_idx" in _plan(AuditEvent.objects.filter(share=share).order_by("-id")[:50])
    assert AuditEvent.objects.filter(share=share).count() == 1
