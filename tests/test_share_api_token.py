"""POST /api/shares with an API token: the token lookup is part of the share's
statement (services.share_create_with_token). It must give exactly what the
usual path (authenticate the token, then share_create) gives, and fall back to
that path, which says what was wrong, whenever it writes nothing."""
from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from shares import audit, fastsql, services, tokens
from shares.models import ApiToken, AuditEvent, Share
from tests.sharecore_fixtures import fetch

pytestmark = pytest.mark.django_db


def _post(token: str, data) -> object:
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")
    body = data if isinstance(data, str) else json.dumps(data)
    return client.post("/api/shares", body, content_type="application/json", HTTP_USER_AGENT="script/1.0")


def _statements(captured) -> list[str]:
    """The first word of each SQL statement run, without the test's savepoints."""
    return [q["sql"].split(" ", 1)[0] for q in captured.captured_queries
            if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def _row(model, pk: int, ignore: set[str]) -> dict:
    obj = model.objects.get(pk=pk)
    return {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields if f.attname not in ignore}


def test_a_token_share_is_one_statement_and_the_same_rows_as_a_signed_in_share(alice, grants, s3_bucket,
                                                                               put_object):
    put_object("docs/ä b.txt", b"token bytes")
    token = tokens.create_api_token(alice, "ci")[1]
    ApiToken.objects.update(last_used_at=timezone.now())  # used a moment ago: no last_used_at write due
    data = {"bucket": s3_bucket.name, "key": "docs/ä b.txt", "expires_in": 600, "max_downloads": 3, "note": "n"}
    with CaptureQueriesContext(connection) as captured:
        response = _post(token, data)
    assert response.status_code == 201, response.content
    # PostgreSQL: the token lookup, the grant check, the share and its event in
    # one statement; SQLite: the lookup, then the share and its event.
    assert _statements(captured) == (["WITH"] if fastsql.one_statement() else ["SELECT", "INSERT", "INSERT"])
    body = response.json()

    signed_in = Client()
    signed_in.force_login(alice)
    usual = signed_in.post("/api/shares", json.dumps(data), content_type="application/json",
                           HTTP_USER_AGENT="script/1.0")
    assert usual.status_code == 201
    differ = {"id", "created_at", "requested_expires_at", "expires_at", "token_nonce", "token_digest"}
    fast_id, usual_id = body["id"], usual.json()["id"]
    assert _row(Share, fast_id, differ) == _row(Share, usual_id, differ)
    assert Share.objects.get(pk=fast_id).created_by_id == alice.pk
    assert Share.objects.get(pk=fast_id).created_by_name == "alice"
    fast_event = AuditEvent.objects.get(share_id=fast_id, action=audit.SHARE_CREATED)
    usual_event = AuditEvent.objects.get(share_id=usual_id, action=audit.SHARE_CREATED)
    assert _row(AuditEvent, fast_event.pk, {"id", "created_at", "share_id", "details"}) == \
        _row(AuditEvent, usual_event.pk, {"id", "created_at", "share_id", "details"})
    assert (fast_event.actor_id, fast_event.actor_name, fast_event.user_agent) == (alice.pk, "alice", "script/1.0")
    assert fast_event.details["share_id"] == fast_id and "via" not in fast_event.details
    assert set(fast_event.details) == set(usual_event.details)
    redirect = Client().get(urllib.parse.urlsplit(body["url"]).path)
    assert fetch(redirect["Location"])[:2] == (200, b"token bytes")


def test_a_direct_link_with_a_token_takes_one_statement_once_the_bucket_is_known(alice, grants, s3_bucket,
                                                                                  put_object):
    put_object("x.bin", b"direct bytes")
    token = tokens.create_api_token(alice, "ci")[1]
    services._signing_configs.clear()
    data = {"bucket": s3_bucket.name, "key": "x.bin", "expires_in": 60, "kind": "direct"}
    first = _post(token, data)  # the full path learns the bucket's signing configuration
    ApiToken.objects.update(last_used_at=timezone.now())
    with CaptureQueriesContext(connection) as captured:
        second = _post(token, data)
    assert first.status_code == second.status_code == 201
    assert _statements(captured) == (["WITH"] if fastsql.one_statement() else ["SELECT", "INSERT", "INSERT"])
    for response in (first, second):
        assert fetch(response.json()["url"])[:2] == (200, b"direct bytes")
    assert set(Share.objects.values_list("created_by_id", flat=True)) == {alice.pk}
    assert AuditEvent.objects.filter(action=audit.SHARE_CREATED, actor_id=alice.pk).count() == 2


def test_last_used_is_written_by_a_token_share_at_most_once_a_minute(alice, grants, s3_bucket):
    token = tokens.create_api_token(alice, "ci")[1]
    data = {"bucket": s3_bucket.name, "key": "x", "expires_in": 60}
    assert ApiToken.objects.get().last_used_at is None
    assert _post(token, data).status_code == 201
    first_use = ApiToken.objects.get().last_used_at
    assert first_use is not None and timezone.now() - first_use < dt.timedelta(seconds=30)
    with CaptureQueriesContext(connection) as captured:
        assert _post(token, data).status_code == 201
    assert "UPDATE" not in _statements(captured) and ApiToken.objects.get().last_used_at == first_use
    earlier = timezone.now() - tokens.LAST_USED_RESOLUTION - dt.timedelta(seconds=1)
    ApiToken.objects.update(last_used_at=earlier)
    assert _post(token, data).status_code == 201
    assert ApiToken.objects.get().last_used_at > earlier + dt.timedelta(seconds=30)


def test_a_deleted_token_or_an_inactive_user_gets_401_and_nothing_is_written(alice, grants, s3_bucket):
    data = {"bucket": s3_bucket.name, "key": "x", "expires_in": 60}
    deleted = tokens.create_api_token(alice, "old")[1]
    tokens.delete_api_token(alice, ApiToken.objects.get(name="old").pk)
    assert _post(deleted, data).status_code == 401
    assert _post("s3p_" + "x" * 43, data).status_code == 401
    token = tokens.create_api_token(alice, "ci")[1]
    alice.is_active = False
    alice.save()
    response = _post(token, data)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert Share.objects.count() == 0
    assert not AuditEvent.objects.filter(action=audit.SHARE_CREATED).exists()


def test_bad_input_with_a_bad_token_gets_401_and_with_a_good_one_400_naming_the_field(alice, grants, s3_bucket):
    bad = {"bucket": s3_bucket.name, "key": "x", "expires_in": "1e3"}
    assert _post("s3p_" + "x" * 43, bad).status_code == 401  # nothing is said before the token is checked
    token = tokens.create_api_token(alice, "ci")[1]
    response = _post(token, bad)
    assert response.status_code == 400 and response.json()["field"] == "expires_in"
    assert _post(token, "[1, 2]").status_code == 400
    assert Share.objects.count() == 0


def test_a_body_too_large_gets_401_with_a_bad_token_and_a_json_413_otherwise(alice, grants, s3_bucket, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = {"bucket": s3_bucket.name, "key": "x", "expires_in": 60, "note": "n" * 2000}
    assert _post("s3p_" + "x" * 43, big).status_code == 401
    response = _post(tokens.create_api_token(alice, "ci")[1], big)
    assert response.status_code == 413
    assert response.json() == {"error": "The request body is too large: at most 1,000 bytes."}
    signed_in = Client(enforce_csrf_checks=False)
    signed_in.force_login(alice)
    response = signed_in.post("/api/shares", json.dumps(big), content_type="application/json")
    assert response.status_code == 413 and "too large" in response.json()["error"]
    assert Share.objects.count() == 0


def test_a_token_without_a_grant_is_refused_and_the_refusal_recorded_as_its_user(bob, charlie, grants, s3_bucket):
    token = tokens.create_api_token(charlie, "ci")[1]
    response = _post(token, {"bucket": s3_bucket.name, "key": "x", "expires_in": 60})
    assert response.status_code == 404  # no grant at all: the bucket is not one charlie can see
    denied = AuditEvent.objects.get(action=audit.ACCESS_DENIED)
    assert (denied.actor_id, denied.actor_name, denied.details["reason"]) == (charlie.pk, "charlie", "no_bucket")
    bob_token = tokens.create_api_token(bob, "ci")[1]
    response = _post(bob_token, {"bucket": s3_bucket.name, "key": "team-b/x", "expires_in": 60})
    assert response.status_code == 403 and response.json()["error"] == "You have no grant that covers this object."
    bob_token = tokens.create_api_token(bob, "ci")[1]
    # bob's grant allows a day in team-a/: longer is refused by the full path, with the limit in the message.
    response = _post(bob_token, {"bucket": s3_bucket.name, "key": "team-a/x", "expires_in": 86401})
    assert response.status_code == 400 and "86400" in response.json()["error"]
    assert Share.objects.count() == 0


def test_a_superusers_token_shares_without_a_grant_through_the_usual_path(django_user_model, s3_bucket):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "root-password-123456")
    token = tokens.create_api_token(root, "ci")[1]
    response = _post(token, {"bucket": s3_bucket.name, "key": "anything", "expires_in": 60})
    assert response.status_code == 201
    share = Share.objects.get()
    assert (share.created_by_id, share.created_by_name) == (root.pk, "root")
