"""Shares and API tokens in the Django admin: read-only records, bulk revocation."""
from __future__ import annotations

import urllib.parse

import pytest

from shares import audit, services, tokens
from shares.models import ApiToken, AuditEvent, Share

pytestmark = pytest.mark.django_db


@pytest.fixture
def some_shares(alice, bob, grants, s3_bucket):
    make = services.share_create
    return {
        "alice_a": make(user=alice, bucket_name=s3_bucket.name, key="team-a/one.txt", expires_in=600),
        "alice_b": make(user=alice, bucket_name=s3_bucket.name, key="team-b/two.txt", expires_in=600),
        "alice_direct": make(user=alice, bucket_name=s3_bucket.name, key="team-a/d.txt", expires_in=600,
                             kind="direct"),
        "bob_a": make(user=bob, bucket_name=s3_bucket.name, key="team-a/three.txt", expires_in=600),
    }


def test_the_share_list_filters_and_searches(admin_client, some_shares):
    response = admin_client.get("/admin/shares/share/?q=three")
    assert response.status_code == 200
    assert b"team-a/three.txt" in response.content and b"team-a/one.txt" not in response.content
    response = admin_client.get("/admin/shares/share/?status=active&kind=direct")
    assert b"team-a/d.txt" in response.content and b"team-a/one.txt" not in response.content


def test_the_share_page_is_read_only_and_hides_the_token(admin_client, some_shares):
    share = some_shares["alice_a"].share
    response = admin_client.get(f"/admin/shares/share/{share.pk}/change/")
    assert response.status_code == 200
    assert share.token_digest.encode() not in response.content
    assert share.token_nonce.encode() not in response.content
    assert admin_client.get("/admin/shares/share/add/").status_code == 403


def test_revoke_selected_writes_one_event_per_share(admin_client, some_shares, client):
    ids = [some_shares[name].share.pk for name in ("alice_a", "bob_a", "alice_direct")]
    response = admin_client.post("/admin/shares/share/", {"action": "revoke_selected", "_selected_action": ids},
                                 follow=True)
    assert b"Revoked 2 portal links" in response.content
    assert b"Skipped 1 direct link" in response.content
    events = AuditEvent.objects.filter(action=audit.SHARE_REVOKED)
    assert events.count() == 2 and all(e.details["bulk"] for e in events)
    portal = some_shares["alice_a"].url
    assert client.get(urllib.parse.urlsplit(portal).path).status_code == 410


def test_revoke_by_bucket_and_prefix_asks_first(admin_client, some_shares, s3_bucket):
    form = {"bucket": s3_bucket.pk, "prefix": "team-a/"}
    preview = admin_client.post("/admin/shares/share/revoke-matching/", form)
    assert b"2 active portal links" in preview.content
    assert not Share.objects.filter(revoked_at__isnull=False).exists()
    admin_client.post("/admin/shares/share/revoke-matching/", {**form, "confirm": "True"})
    revoked = set(Share.objects.filter(revoked_at__isnull=False).values_list("key", flat=True))
    assert revoked == {"team-a/one.txt", "team-a/three.txt"}
    assert AuditEvent.objects.filter(action=audit.SHARE_REVOKED).count() == 2


def test_revoke_by_user(admin_client, some_shares, alice):
    admin_client.post("/admin/shares/share/revoke-matching/", {"created_by": alice.pk, "confirm": "True"})
    revoked = set(Share.objects.filter(revoked_at__isnull=False).values_list("key", flat=True))
    assert revoked == {"team-a/one.txt", "team-b/two.txt"}


def test_revoke_matching_needs_a_user_or_bucket(admin_client, some_shares):
    response = admin_client.post("/admin/shares/share/revoke-matching/", {"prefix": "team-a/", "confirm": "True"})
    assert b"Choose a user, a bucket, or both." in response.content
    assert not Share.objects.filter(revoked_at__isnull=False).exists()


def test_staff_without_permission_cannot_revoke(alice, alice_client, some_shares):
    alice.is_staff = True
    alice.save()
    assert alice_client.post("/admin/shares/share/revoke-matching/", {"created_by": alice.pk}).status_code == 403


def test_api_tokens_are_listed_and_deleted_with_an_audit_event(admin_client, alice):
    token, plaintext = tokens.create_api_token(alice, "laptop")
    response = admin_client.get("/admin/shares/apitoken/")
    assert b"laptop" in response.content and plaintext.encode() not in response.content
    assert token.digest.encode() not in admin_client.get(f"/admin/shares/apitoken/{token.pk}/change/").content
    admin_client.post(f"/admin/shares/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.filter(action=audit.TOKEN_DELETED).count() == 1
